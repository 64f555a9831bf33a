"""Specification of the socket-table core: procnet (parsing) and sockroles (roles)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.procnet import (
    SKIP_BAD_ADDRESS,
    SKIP_BAD_NUMBER,
    SKIP_BAD_PORT,
    SKIP_BAD_STATE,
    SKIP_BLANK,
    SKIP_HEADER,
    SKIP_REASONS,
    SKIP_SHORT,
    TcpSocket,
    TcpState,
    decode_address,
    parse_tcp_table,
)
from capture.sockroles import (
    ROLE_CLIENT,
    ROLE_SERVER,
    classify,
)

# Copied from this machine's /proc/net/tcp (Linux 6.18, x86-64), trailing
# blanks included: listeners on 0.0.0.0:2024 and 192.0.2.2:9000, both ends of
# a connection to 9000, a client to port 7000, and a TIME_WAIT.
REAL_TCP = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode                                                     \n"
    "   0: 020200C0:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  "
    "      0 9190 1 000000006949af72 100 0 0 10 0                      \n"
    "   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  "
    "      0 1081 1 0000000048d6e2f5 100 0 0 10 0                      \n"
    "   2: 020200C0:E3F2 020200C0:1B58 01 00000000:00000000 00:00000000 00000000     0  "
    "      0 9197 2 00000000752f313d 20 0 0 10 -1                      \n"
    "   3: 0100007F:805A 0100007F:9F0D 06 00000000:00000000 03:00000781 00000000     0  "
    "      0 0 3 000000006cb4f7fd                                      \n"
    "  16: 020200C0:A86E 020200C0:2328 01 00000000:00000000 00:00000000 00000000     0  "
    "      0 9191 2 00000000af4b8cab 20 0 0 10 -1                      \n"
    "  17: 020200C0:2328 020200C0:A86E 01 00000000:00000000 00:00000000 00000000     0  "
    "      0 9192 1 00000000ddcde643 20 0 0 10 -1                      \n"
)

# From the same machine's /proc/net/tcp6: listeners on [fd00::2]:9443 and
# [::]:7000, both ends of a connection to 9443, the server end of the IPv4
# client above (accepted by the v6 wildcard, so IPv4-mapped), and ::1.
REAL_TCP6 = (
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 000000FD000000000000000002000000:24E3 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 9193 1 00000000f3759217 100 0 0 10 0\n"
    "   1: 00000000000000000000000000000000:1B58 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 9196 1 00000000beaa2a31 100 0 0 10 0\n"
    "   4: 000000FD000000000000000002000000:24E3 000000FD000000000000000002000000:E180 01 "
    "00000000:00000000 00:00000000 00000000     0        0 9195 1 000000004446b361 20 0 0 10 -1\n"
    "   5: 0000000000000000FFFF0000020200C0:1B58 0000000000000000FFFF0000020200C0:E3F2 01 "
    "00000000:00000000 00:00000000 00000000     0        0 9198 1 0000000007a8817e 20 0 0 10 -1\n"
    "   6: 000000FD000000000000000002000000:E180 000000FD000000000000000002000000:24E3 01 "
    "00000000:00000000 00:00000000 00000000     0        0 9194 2 0000000034c98dbd 20 0 0 10 -1\n"
    "   7: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 9132 1 00000000f3759217 100 0 0 10 0\n"
)


def hex_address(ip: str) -> str:
    """Encode an address the way a little-endian kernel prints it."""
    packed = ipaddress.ip_address(ip).packed
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def tcp_line(
    local: str, lport: int, remote: str, rport: int, state: int, inode: int = 1, uid: int = 0
) -> str:
    return (
        f"   0: {hex_address(local)}:{lport:04X} {hex_address(remote)}:{rport:04X} {state:02X} "
        f"00000000:00000000 00:00000000 00000000 {uid:5d}        0 {inode} 1 "
        "0000000000000000 100 0 0 10 0"
    )


def sock(
    local: str, lport: int, remote: str, rport: int, state: TcpState, inode: int = 1
) -> TcpSocket:
    return TcpSocket(local, lport, remote, rport, state, inode, 0, ":" in local)


# --- parsing real kernel output -------------------------------------------------


def test_real_ipv4_table_gives_every_socket_and_counts_the_header() -> None:
    table = parse_tcp_table(REAL_TCP)

    assert table.skipped == {SKIP_HEADER: 1}
    assert table.filtered == 0
    assert table.sockets[0] == TcpSocket(
        "192.0.2.2", 9000, "0.0.0.0", 0, TcpState.LISTEN, 9190, 0, False
    )
    assert table.sockets[1] == TcpSocket(
        "0.0.0.0", 2024, "0.0.0.0", 0, TcpState.LISTEN, 1081, 0, False
    )
    assert table.sockets[2] == TcpSocket(
        "192.0.2.2", 58354, "192.0.2.2", 7000, TcpState.ESTABLISHED, 9197, 0, False
    )
    assert [(s.local_port, s.remote_port, s.inode) for s in table.sockets[4:]] == [
        (43118, 9000, 9191),
        (9000, 43118, 9192),
    ]


def test_time_wait_entries_parse_with_inode_zero() -> None:
    time_wait = parse_tcp_table(REAL_TCP).sockets[3]

    assert time_wait.state is TcpState.TIME_WAIT
    assert (time_wait.local_ip, time_wait.local_port) == ("127.0.0.1", 32858)
    assert (time_wait.remote_ip, time_wait.remote_port) == ("127.0.0.1", 40717)
    assert time_wait.inode == 0


def test_real_ipv6_table_decodes_four_little_endian_words() -> None:
    sockets = parse_tcp_table(REAL_TCP6).sockets

    assert sockets[0] == TcpSocket("fd00::2", 9443, "::", 0, TcpState.LISTEN, 9193, 0, True)
    assert (sockets[1].local_ip, sockets[1].local_port) == ("::", 7000)
    assert (sockets[2].local_ip, sockets[2].remote_ip, sockets[2].remote_port) == (
        "fd00::2",
        "fd00::2",
        57728,
    )
    assert sockets[5].local_ip == "::1"


def test_ipv4_mapped_ipv6_is_reported_as_ipv4_from_a_v6_socket() -> None:
    mapped = parse_tcp_table(REAL_TCP6).sockets[3]

    assert (mapped.local_ip, mapped.local_port) == ("192.0.2.2", 7000)
    assert (mapped.remote_ip, mapped.remote_port) == ("192.0.2.2", 58354)
    assert mapped.ipv6 is True


def test_bytes_and_text_parse_alike() -> None:
    assert parse_tcp_table(REAL_TCP.encode()) == parse_tcp_table(REAL_TCP)


def test_tcp_and_tcp6_text_can_be_parsed_together() -> None:
    both = parse_tcp_table(REAL_TCP + REAL_TCP6)

    assert len(both.sockets) == 6 + 6
    assert both.skipped == {SKIP_HEADER: 2}


def test_state_filter_counts_what_it_leaves_out() -> None:
    table = parse_tcp_table(REAL_TCP, states={TcpState.ESTABLISHED})

    assert {s.state for s in table.sockets} == {TcpState.ESTABLISHED}
    assert len(table.sockets) == 3
    assert table.filtered == 3  # two LISTEN, one TIME_WAIT
    assert table.skipped == {SKIP_HEADER: 1}


# --- states and addresses ------------------------------------------------------


def test_states_have_the_kernel_numbers() -> None:
    assert TcpState.ESTABLISHED.value == 0x01
    assert TcpState.TIME_WAIT.value == 0x06
    assert TcpState.LISTEN.value == 0x0A
    assert TcpState.NEW_SYN_RECV.value == 0x0C
    assert [s.value for s in TcpState] == list(range(1, 14))


@pytest.mark.parametrize("state", list(TcpState))
def test_every_state_is_parsed(state: TcpState) -> None:
    table = parse_tcp_table(tcp_line("10.0.0.1", 1, "10.0.0.2", 2, state))

    assert [s.state for s in table.sockets] == [state]


def test_lower_case_hex_is_accepted() -> None:
    line = tcp_line("fd00::b", 443, "fd00::a", 50000, TcpState.SYN_RECV).lower()

    (s,) = parse_tcp_table(line).sockets
    assert (s.local_ip, s.local_port, s.remote_ip, s.state) == (
        "fd00::b",
        443,
        "fd00::a",
        TcpState.SYN_RECV,
    )


@pytest.mark.parametrize(
    ("hex_text", "expected"),
    [
        ("0100007F", "127.0.0.1"),
        ("020200C0", "192.0.2.2"),
        ("00000000", "0.0.0.0"),
        ("00000000000000000000000000000000", "::"),
        ("00000000000000000000000001000000", "::1"),
        ("000000FD000000000000000002000000", "fd00::2"),
        ("0000000000000000FFFF00000100007F", "127.0.0.1"),
        ("B80D0120000000000000000001000000", "2001:db8::1"),
        ("0100007", None),
        ("0100007G", None),
        ("0x00007F", None),
        ("+100007F", None),
        ("", None),
        ("0100007F00", None),
    ],
)
def test_decode_address(hex_text: str, expected: str | None) -> None:
    assert decode_address(hex_text) == expected


def test_big_endian_nodes_print_addresses_in_network_order() -> None:
    assert decode_address("7F000001", "big") == "127.0.0.1"
    assert decode_address("FD000000000000000000000000000002", "big") == "fd00::2"
    assert decode_address("00000000000000000000FFFF0A000001", "big") == "10.0.0.1"


# --- lines that are not socket entries -------------------------------------------

GOOD = tcp_line("10.0.0.1", 80, "10.0.0.2", 40000, TcpState.ESTABLISHED, inode=77)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", SKIP_BLANK),
        ("   \t ", SKIP_BLANK),
        ("  sl  local_address rem_address   st tx_queue", SKIP_HEADER),
        ("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000", SKIP_SHORT),
        ("hello world", SKIP_SHORT),
        (GOOD.replace(" 01 ", " 0Z ", 1), SKIP_BAD_STATE),
        (GOOD.replace(" 01 ", " 1F ", 1), SKIP_BAD_STATE),
        (GOOD.replace("0100000A:", "0100000G:", 1), SKIP_BAD_ADDRESS),
        (GOOD.replace("0100000A:", "100000A:", 1), SKIP_BAD_ADDRESS),
        (GOOD.replace("0200000A:", "00000000000000000000000002000000:", 1), SKIP_BAD_ADDRESS),
        (GOOD.replace("0100000A:0050", "0100000A:00G0", 1), SKIP_BAD_PORT),
        (GOOD.replace("0100000A:0050", "0100000A:050", 1), SKIP_BAD_ADDRESS),
        (GOOD.replace("0100000A:0050", "0100000A+0050", 1), SKIP_BAD_PORT),
        (GOOD.replace("0100000A:0050", "0100000A:+050", 1), SKIP_BAD_PORT),
        (GOOD.replace(" 77 ", " x77 ", 1), SKIP_BAD_NUMBER),
        (GOOD.replace(" 77 ", " -77 ", 1), SKIP_BAD_NUMBER),
        (GOOD.replace(" 77 ", " ٧٧ ", 1), SKIP_BAD_NUMBER),
        (GOOD.replace("    0        0 77", "   -1        0 77", 1), SKIP_BAD_NUMBER),
    ],
)
def test_odd_lines_are_skipped_with_a_reason(line: str, reason: str) -> None:
    table = parse_tcp_table(f"{GOOD}\n{line}\n{GOOD}\n")

    assert len(table.sockets) == 2
    assert table.skipped == {reason: 1}


def test_the_good_line_template_is_good() -> None:
    assert parse_tcp_table(GOOD).sockets == (
        TcpSocket("10.0.0.1", 80, "10.0.0.2", 40000, TcpState.ESTABLISHED, 77, 0, False),
    )


def test_undecodable_bytes_are_skipped_not_raised() -> None:
    table = parse_tcp_table(b"\xff\xfe\x00garbage\n" + GOOD.encode() + b"\n\x80\x81")

    assert len(table.sockets) == 1
    assert table.skipped == {SKIP_SHORT: 2}


@given(st.text())
def test_random_text_never_raises_and_every_line_is_accounted_for(text: str) -> None:
    table = parse_tcp_table(text)

    assert len(table.sockets) + table.skipped_total == len(text.splitlines())
    assert set(table.skipped) <= set(SKIP_REASONS)


@given(st.binary())
def test_random_bytes_never_raise(data: bytes) -> None:
    parse_tcp_table(data)


@given(
    st.lists(
        st.one_of(
            st.just(GOOD),
            st.text(alphabet="0123456789ABCDEFabcdefx:+-_ \t", max_size=200),
            st.builds(
                lambda cols: " ".join(cols),
                st.lists(st.text(alphabet="0123456789ABCDEF:", max_size=40), max_size=14),
            ),
        ),
        max_size=20,
    )
)
def test_near_miss_lines_never_raise(lines: list[str]) -> None:
    table = parse_tcp_table("\n".join(lines))

    assert len(table.sockets) + table.skipped_total == len("\n".join(lines).splitlines())


_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)


@given(
    st.one_of(st.tuples(_ipv4, _ipv4), st.tuples(_ipv6, _ipv6)),
    _port,
    _port,
    st.sampled_from(list(TcpState)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_any_well_formed_line_round_trips(
    ends: tuple[str, str], lport: int, rport: int, state: TcpState, inode: int, uid: int
) -> None:
    local, remote = ends
    (s,) = parse_tcp_table(tcp_line(local, lport, remote, rport, state, inode, uid)).sockets

    def canonical(ip: str) -> str:
        addr = ipaddress.ip_address(ip)
        mapped = getattr(addr, "ipv4_mapped", None)
        return str(mapped or addr)

    assert (s.local_ip, s.local_port, s.remote_ip, s.remote_port) == (
        canonical(local),
        lport,
        canonical(remote),
        rport,
    )
    assert (s.state, s.inode, s.uid, s.ipv6) == (state, inode, uid, ":" in local)


# --- roles of the real tables (more in test_sockroles.py) -----------------------------


def test_both_ends_in_one_namespace_get_both_roles() -> None:
    # Real kernel lines: 192.0.2.2 called itself on 9000 and on 9443.
    sockets = [*parse_tcp_table(REAL_TCP).sockets, *parse_tcp_table(REAL_TCP6).sockets]
    got = {(c.local_ip, c.local_port, c.remote_port, c.role) for c in classify(sockets).connections}

    assert got == {
        ("192.0.2.2", 58354, 7000, ROLE_CLIENT),
        ("192.0.2.2", 43118, 9000, ROLE_CLIENT),
        ("192.0.2.2", 9000, 43118, ROLE_SERVER),
        ("fd00::2", 9443, 57728, ROLE_SERVER),
        ("fd00::2", 57728, 9443, ROLE_CLIENT),
        ("192.0.2.2", 7000, 58354, ROLE_SERVER),
    }


def test_listeners_include_wildcards() -> None:
    sockets = [*parse_tcp_table(REAL_TCP).sockets, *parse_tcp_table(REAL_TCP6).sockets]

    assert classify(sockets).listeners == {
        ("192.0.2.2", 9000),
        ("0.0.0.0", 2024),
        ("fd00::2", 9443),
        ("::", 7000),
        ("::1", 9090),
    }
