"""A reported client socket's health from its tcp_info: one RTT sample a report, and
the retransmits since the connection's previous report."""

from __future__ import annotations

from callmap.wire import FlowHealth, RttSamples
from capture.connreport import ConnReport
from capture.inetdiag import DiagSocket
from capture.procnet import TcpState
from capture.sockroles import Role
from capture.tcphealth import SocketKey, TcpHealth, by_addresses


def report(role: Role = "client", first_seen: float = 10.0, ts: float = 10.0) -> ConnReport:
    return ConnReport(
        netns=7,
        pod_uid="uid-a",
        local_ip="10.1.0.10",
        local_port=40000,
        remote_ip="10.1.0.11",
        remote_port=7070,
        role=role,
        first_seen=first_seen,
        ts=ts,
        first_report=ts == first_seen,
    )


def dumped(rtt_us: int | None = 1500, total_retrans: int | None = 4) -> dict[SocketKey, DiagSocket]:
    socket = DiagSocket(
        family=2,
        state=TcpState.ESTABLISHED,
        local_ip="10.1.0.10",
        local_port=40000,
        remote_ip="10.1.0.11",
        remote_port=7070,
        inode=99,
        uid=0,
        rtt_us=rtt_us,
        total_retrans=total_retrans,
    )
    return by_addresses([socket])


def test_a_first_report_tells_its_rtt_and_every_retransmit_so_far() -> None:
    assert TcpHealth().health(report(), dumped()) == FlowHealth(
        retransmits=4, rtt=RttSamples.of(1500)
    )


def test_a_later_report_tells_the_retransmits_since_the_previous_one() -> None:
    tcp = TcpHealth()
    tcp.health(report(), dumped(total_retrans=4))
    later = tcp.health(report(ts=20.0), dumped(rtt_us=900, total_retrans=9))
    assert later == FlowHealth(retransmits=5, rtt=RttSamples.of(900))


def test_a_new_connection_on_the_same_addresses_starts_from_zero() -> None:
    tcp = TcpHealth()
    tcp.health(report(), dumped(total_retrans=4))
    again = tcp.health(report(first_seen=30.0, ts=30.0), dumped(total_retrans=1))
    assert again is not None and again.retransmits == 1


def test_servers_sockets_not_dumped_and_sockets_without_tcp_info_tell_nothing() -> None:
    tcp = TcpHealth()
    assert tcp.health(report(role="server"), dumped()) is None  # the client tells it
    assert tcp.health(report(), None) is None  # its namespace was not dumped
    assert tcp.health(report(), {}) is None  # closed between the scan and the dump
    assert tcp.health(report(), dumped(rtt_us=None)) is None  # TIME_WAIT: no tcp_info


def test_connections_the_reporter_forgot_are_forgotten() -> None:
    tcp = TcpHealth()
    tcp.health(report(), dumped())
    key = (7, "10.1.0.10", 40000, "10.1.0.11", 7070)
    tcp.forget_gone(lambda k: 10.0 if k == key else None)
    assert len(tcp) == 1  # still live, the same connection
    tcp.forget_gone(lambda k: 30.0)  # another connection on the same addresses now
    assert len(tcp) == 0
