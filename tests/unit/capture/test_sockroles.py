"""Specification of sockroles: which side of each connection a namespace is on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.procnet import TcpSocket, TcpState
from capture.sockroles import (
    DROP_LOOPBACK,
    DROP_NOT_ESTABLISHED,
    ROLE_CLIENT,
    ROLE_SERVER,
    classify,
    is_loopback,
)


def sock(
    local: str, lport: int, remote: str, rport: int, state: TcpState, inode: int = 1
) -> TcpSocket:
    return TcpSocket(local, lport, remote, rport, state, inode, 0, ":" in local)


E = TcpState.ESTABLISHED
L = TcpState.LISTEN


def roles(sockets: list[TcpSocket]) -> list[tuple[int, int, str]]:
    return [(c.local_port, c.remote_port, c.role) for c in classify(sockets).connections]


def test_a_connection_on_a_port_listening_on_the_v4_wildcard_is_the_server_side() -> None:
    sockets = [
        sock("0.0.0.0", 8080, "0.0.0.0", 0, L),
        sock("10.0.0.1", 8080, "10.0.0.9", 51000, E),
    ]
    assert roles(sockets) == [(8080, 51000, ROLE_SERVER)]


def test_a_listener_on_a_specific_address_serves_only_that_address() -> None:
    sockets = [
        sock("10.0.0.1", 5432, "0.0.0.0", 0, L),
        sock("10.0.0.1", 5432, "10.0.0.9", 51000, E),
        # Same port on another local address: not accepted by that listener.
        sock("10.0.1.1", 5432, "10.0.0.9", 51001, E),
    ]
    assert roles(sockets) == [(5432, 51000, ROLE_SERVER), (5432, 51001, ROLE_CLIENT)]


def test_a_v6_wildcard_listener_also_covers_ipv4_connections() -> None:
    sockets = [
        sock("::", 7000, "::", 0, L),
        sock("192.0.2.2", 7000, "192.0.2.7", 58354, E),
        sock("fd00::2", 7000, "fd00::7", 58355, E),
    ]
    assert roles(sockets) == [(7000, 58354, ROLE_SERVER), (7000, 58355, ROLE_SERVER)]


def test_a_v4_wildcard_listener_does_not_cover_ipv6_connections() -> None:
    sockets = [
        sock("0.0.0.0", 7000, "0.0.0.0", 0, L),
        sock("fd00::2", 7000, "fd00::7", 58355, E),
    ]
    assert roles(sockets) == [(7000, 58355, ROLE_CLIENT)]


def test_a_client_to_a_remote_listener_on_the_same_port_number_stays_a_client() -> None:
    # This namespace serves 8080 itself, and also calls another pod's 8080.
    sockets = [
        sock("0.0.0.0", 8080, "0.0.0.0", 0, L),
        sock("10.0.0.1", 45000, "10.0.0.2", 8080, E),
    ]
    assert roles(sockets) == [(45000, 8080, ROLE_CLIENT)]


def test_loopback_connections_are_dropped_and_counted() -> None:
    sockets = [
        sock("0.0.0.0", 80, "0.0.0.0", 0, L),
        sock("127.0.0.1", 80, "127.0.0.1", 40000, E),
        sock("127.1.2.3", 40001, "10.0.0.2", 80, E),
        sock("10.0.0.1", 40002, "127.0.0.53", 53, E),
        sock("::1", 80, "::1", 40003, E),
        sock("10.0.0.1", 80, "10.0.0.2", 40004, E),
    ]
    result = classify(sockets)

    assert [(c.remote_port, c.role) for c in result.connections] == [(40004, ROLE_SERVER)]
    assert result.dropped == {DROP_LOOPBACK: 4, DROP_NOT_ESTABLISHED: 1}


def test_loopback_can_be_kept_on_request() -> None:
    sockets = [sock("0.0.0.0", 80, "0.0.0.0", 0, L), sock("127.0.0.1", 80, "127.0.0.1", 4, E)]

    assert [c.role for c in classify(sockets, include_loopback=True).connections] == [ROLE_SERVER]


def test_only_established_connections_are_reported() -> None:
    sockets = [
        sock("10.0.0.1", 80, "10.0.0.2", 40000, state)
        for state in TcpState
        if state is not TcpState.ESTABLISHED
    ]
    result = classify(sockets)

    assert result.connections == ()
    assert result.dropped == {DROP_NOT_ESTABLISHED: len(TcpState) - 1}


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("128.0.0.1", False),
        ("10.127.0.1", False),
        ("::", False),
        ("fd00::1", False),
    ],
)
def test_is_loopback(ip: str, loopback: bool) -> None:
    assert is_loopback(ip) is loopback


def test_connections_carry_inode_and_uid_for_tracing_back_to_a_process() -> None:
    (conn,) = classify(
        [TcpSocket("10.0.0.1", 4000, "10.0.0.2", 80, E, 12345, 1000, False)]
    ).connections

    assert (conn.inode, conn.uid) == (12345, 1000)


# --- any namespace: the roles as the module docstring states them -------------------

ADDRESSES = ["10.0.0.1", "10.0.0.2", "127.0.0.1", "127.9.9.9", "fd00::1", "fd00::2", "::1"]
WILDCARDS = ["0.0.0.0", "::"]


def expected(sockets: list[TcpSocket], include_loopback: bool) -> list[tuple[str, int, str]]:
    """The rule, spelled out without regard to speed."""
    listening = [(s.local_ip, s.local_port) for s in sockets if s.state is TcpState.LISTEN]
    found = []
    for s in sockets:
        if s.state is not TcpState.ESTABLISHED:
            continue
        ends_in_loopback = any(
            ip == "::1" or ip.split(".")[0] == "127" for ip in (s.local_ip, s.remote_ip)
        )
        if ends_in_loopback and not include_loopback:
            continue
        accepted_by = [
            ip
            for ip, port in listening
            if port == s.local_port
            and (ip in (s.local_ip, "::") or (ip == "0.0.0.0" and "." in s.local_ip))
        ]
        found.append((s.local_ip, s.local_port, "server" if accepted_by else "client"))
    return found


@st.composite
def namespaces(draw: st.DrawFn) -> list[TcpSocket]:
    ports = st.sampled_from([80, 443, 8080, 40000, 40001])
    listeners = draw(
        st.lists(
            st.tuples(st.sampled_from(ADDRESSES + WILDCARDS), ports).map(
                lambda end: sock(end[0], end[1], "::" if ":" in end[0] else "0.0.0.0", 0, L)
            ),
            max_size=6,
        )
    )
    others = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ADDRESSES),
                ports,
                st.sampled_from(ADDRESSES),
                ports,
                st.sampled_from([E, E, E, TcpState.TIME_WAIT, TcpState.SYN_SENT]),
            ).map(lambda s: sock(*s)),
            max_size=30,
        )
    )
    return draw(st.permutations(listeners + others))


@given(namespaces(), st.booleans())
def test_every_namespace_gets_the_roles_the_rule_gives(
    sockets: list[TcpSocket], include_loopback: bool
) -> None:
    result = classify(sockets, include_loopback=include_loopback)

    got = [(c.local_ip, c.local_port, c.role) for c in result.connections]
    assert got == expected(sockets, include_loopback)
    established = sum(s.state is TcpState.ESTABLISHED for s in sockets)
    assert result.dropped.get(DROP_NOT_ESTABLISHED, 0) == len(sockets) - established
    assert len(result.connections) + result.dropped.get(DROP_LOOPBACK, 0) == established
