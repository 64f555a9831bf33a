"""Specification of the reporter: what a sequence of scans publishes, with fake times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmap.errors import ConfigError
from capture.connreport import DEFAULT_REFRESH_INTERVAL, ConnReport, ConnReporter
from capture.procparse import NamespaceScan
from capture.sockroles import ROLE_CLIENT, ROLE_SERVER, Connection, Role

NS_A, NS_B = 4026532100, 4026532200
POD_A = "0f5f3a57-3b4e-4a5c-9a43-1c2d3e4f5a6b"


def conn(remote_port: int = 80, role: Role = ROLE_CLIENT, local_port: int = 40000) -> Connection:
    return Connection("10.0.0.5", local_port, "10.0.0.9", remote_port, role, inode=1, uid=0)


def ns(*connections: Connection, netns: int = NS_A, pod_uid: str | None = POD_A) -> NamespaceScan:
    return NamespaceScan(
        netns=netns,
        pod_uid=pod_uid,
        pid=1,
        pids=(1,),
        connections=connections,
        listeners=frozenset(),
        sockets=len(connections),
    )


def reported(reporter: ConnReporter, now: float, *scan: NamespaceScan) -> list[tuple[int, bool]]:
    """(remote port, first_report) of what one scan publishes."""
    return [(r.remote_port, r.first_report) for r in reporter.observe(scan, now).reports]


def test_a_connection_is_reported_when_first_seen() -> None:
    reporter = ConnReporter()

    batch = reporter.observe([ns(conn())], now=1000.0)

    assert batch.reports == (
        ConnReport(
            netns=NS_A,
            pod_uid=POD_A,
            local_ip="10.0.0.5",
            local_port=40000,
            remote_ip="10.0.0.9",
            remote_port=80,
            role=ROLE_CLIENT,
            first_seen=1000.0,
            ts=1000.0,
            first_report=True,
        ),
    )
    assert (batch.new, batch.refreshed, batch.quiet, batch.forgotten, batch.live) == (1, 0, 0, 0, 1)


def test_it_stays_quiet_until_the_refresh_interval_has_passed() -> None:
    reporter = ConnReporter(refresh_interval=300.0)
    reporter.observe([ns(conn())], now=1000.0)

    quiet = reporter.observe([ns(conn())], now=1010.0)
    assert quiet.reports == ()
    assert quiet.quiet == 1

    assert reported(reporter, 1299.9, ns(conn())) == []
    assert reported(reporter, 1300.0, ns(conn())) == [(80, False)]


def test_a_refresh_keeps_first_seen_and_restarts_the_interval() -> None:
    reporter = ConnReporter(refresh_interval=300.0)
    reporter.observe([ns(conn())], now=1000.0)

    (refresh,) = reporter.observe([ns(conn())], now=1350.0).reports
    assert (refresh.first_seen, refresh.ts, refresh.first_report) == (1000.0, 1350.0, False)

    assert reported(reporter, 1600.0, ns(conn())) == []
    assert reported(reporter, 1650.0, ns(conn())) == [(80, False)]


def test_a_connection_missing_from_a_scan_is_forgotten_and_is_new_when_it_returns() -> None:
    reporter = ConnReporter()
    reporter.observe([ns(conn(80), conn(443))], now=1000.0)

    batch = reporter.observe([ns(conn(443))], now=1005.0)
    assert (batch.forgotten, batch.live, len(reporter)) == (1, 1, 1)

    (again,) = reporter.observe([ns(conn(80), conn(443))], now=1010.0).reports
    assert (again.remote_port, again.first_seen, again.first_report) == (80, 1010.0, True)


def test_an_empty_scan_forgets_everything() -> None:
    reporter = ConnReporter()
    reporter.observe([ns(conn(80), conn(443)), ns(conn(53), netns=NS_B)], now=1000.0)

    batch = reporter.observe([], now=1005.0)

    assert (batch.forgotten, batch.live, len(reporter)) == (3, 0, 0)


def test_the_namespace_is_part_of_a_connections_identity() -> None:
    reporter = ConnReporter()
    reporter.observe([ns(conn(80, ROLE_CLIENT))], now=1000.0)

    batch = reporter.observe(
        [ns(conn(80, ROLE_CLIENT)), ns(conn(80, ROLE_CLIENT), netns=NS_B, pod_uid=None)],
        now=1001.0,
    )

    assert [(r.netns, r.role, r.pod_uid) for r in batch.reports] == [(NS_B, ROLE_CLIENT, None)]
    assert (batch.new, batch.quiet) == (1, 1)


def serving(*connections: Connection, listeners: frozenset[tuple[str, int]]) -> NamespaceScan:
    scan = ns(*connections)
    return NamespaceScan(
        netns=scan.netns,
        pod_uid=scan.pod_uid,
        pid=1,
        pids=(1,),
        connections=connections,
        listeners=listeners,
        sockets=len(connections),
    )


ACCEPTED = conn(remote_port=51000, role=ROLE_SERVER, local_port=8080)
DRAINING = conn(remote_port=51000, role=ROLE_CLIENT, local_port=8080)  # as classify sees it now
LATE = conn(remote_port=51001, role=ROLE_CLIENT, local_port=8080)


def test_a_connection_keeps_its_role_while_it_drains_after_its_listener_closed() -> None:
    reporter = ConnReporter(refresh_interval=10.0)
    reporter.observe([serving(ACCEPTED, listeners=frozenset({("::", 8080)}))], now=1000.0)

    batch = reporter.observe([serving(DRAINING, listeners=frozenset())], now=1010.0)

    assert [(r.role, r.first_report) for r in batch.reports] == [(ROLE_SERVER, False)]
    assert batch.new == 0  # the same connection, not a reversed new one


def test_a_connection_first_seen_after_its_listener_closed_is_the_server_side() -> None:
    reporter = ConnReporter(listener_memory=60.0)
    reporter.observe([serving(listeners=frozenset({("0.0.0.0", 8080)}))], now=1000.0)

    (late,) = reporter.observe([serving(LATE, listeners=frozenset())], now=1030.0).reports
    assert late.role == ROLE_SERVER

    forgetful = ConnReporter(listener_memory=60.0)
    forgetful.observe([serving(listeners=frozenset({("0.0.0.0", 8080)}))], now=1000.0)
    forgetful.observe([serving(listeners=frozenset())], now=1061.0)  # the memory is over
    (client,) = forgetful.observe([serving(LATE, listeners=frozenset())], now=1062.0).reports
    assert client.role == ROLE_CLIENT


def test_reports_carry_the_pod_of_the_current_scan() -> None:
    reporter = ConnReporter(refresh_interval=10.0)
    reporter.observe([ns(conn(), pod_uid=None)], now=1000.0)

    (refresh,) = reporter.observe([ns(conn(), pod_uid=POD_A)], now=1010.0).reports

    assert refresh.pod_uid == POD_A


def test_the_same_connection_listed_twice_in_one_scan_is_reported_once() -> None:
    reporter = ConnReporter()

    batch = reporter.observe([ns(conn(), conn())], now=1000.0)

    assert (len(batch.reports), batch.new, batch.live) == (1, 1, 1)


def test_a_clock_that_steps_back_restarts_the_refresh_timer() -> None:
    reporter = ConnReporter(refresh_interval=300.0)
    reporter.observe([ns(conn())], now=10_000.0)

    assert reported(reporter, 9_000.0, ns(conn())) == [(80, False)]
    assert reported(reporter, 9_100.0, ns(conn())) == []
    assert reported(reporter, 9_300.0, ns(conn())) == [(80, False)]


def test_the_default_refresh_interval_is_five_minutes() -> None:
    assert ConnReporter().refresh_interval == DEFAULT_REFRESH_INTERVAL == 300.0


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_a_refresh_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ConfigError, match="refresh_interval"):
        ConnReporter(refresh_interval=interval)


# A scan is a set of live remote ports in one namespace; gaps are 1..200 s.
_scans = st.lists(
    st.tuples(st.floats(1.0, 200.0), st.frozensets(st.integers(1, 6), max_size=6)),
    max_size=40,
)


@given(_scans)
def test_any_scan_sequence_reports_new_at_once_and_refreshes_at_most_once_per_interval(
    scans: list[tuple[float, frozenset[int]]],
) -> None:
    interval = 300.0
    reporter = ConnReporter(refresh_interval=interval)
    now = 0.0
    live_before: frozenset[int] = frozenset()
    last_report: dict[int, float] = {}
    for gap, ports in scans:
        now += gap
        batch = reporter.observe([ns(*(conn(p) for p in sorted(ports)))], now)
        by_port = {r.remote_port: r for r in batch.reports}

        assert set(by_port) <= ports
        for port in ports - live_before:
            assert by_port[port].first_report
            assert by_port[port].first_seen == now
        for port in ports & live_before:
            due = now - last_report[port] >= interval
            assert (port in by_port) is due
            if due:
                assert not by_port[port].first_report
        for port in by_port:
            last_report[port] = now
        assert len(reporter) == batch.live == len(ports)
        live_before = ports
