"""Socket scans become observations: first sighting, quiet, refresh."""

from __future__ import annotations

from callmap.counters import Counters
from capture.procparse import NamespaceScan, ScanResult
from capture.sockagent import SocketScanner
from capture.sockroles import Connection

CONN = Connection(
    local_ip="10.1.0.10",
    local_port=43210,
    remote_ip="10.1.0.11",
    remote_port=7070,
    role="client",
    inode=1,
    uid=0,
)


def scan(*connections: Connection, lost: int = 0) -> ScanResult:
    namespace = NamespaceScan(
        netns=4026532281,
        pod_uid="uid-1",
        pid=10,
        pids=(10,),
        connections=connections,
        listeners=frozenset(),
        sockets=len(connections),
        skipped={},
    )
    return ScanResult((namespace,), {"netns_unreadable": lost} if lost else {})


def scanner() -> tuple[SocketScanner, Counters]:
    counters = Counters()
    return SocketScanner(
        cluster="c", node="n", counters=counters.stage("sockets"), refresh_interval=300.0
    ), counters


def test_a_new_connection_is_reported_with_its_namespace_and_pod() -> None:
    s, _ = scanner()
    (record,) = s.take(scan(CONN), now=1000.0)
    assert (record.cluster, record.node, record.netns, record.pod_uid) == (
        "c",
        "n",
        4026532281,
        "uid-1",
    )
    assert (record.local_ip, record.local_port, record.remote_ip, record.remote_port) == (
        "10.1.0.10",
        43210,
        "10.1.0.11",
        7070,
    )
    assert (record.role, record.ts, record.first_seen) == ("client", 1000.0, 1000.0)


def test_a_live_connection_is_quiet_until_its_refresh_is_due() -> None:
    s, counters = scanner()
    s.take(scan(CONN), now=1000.0)
    assert s.take(scan(CONN), now=1010.0) == []
    (refresh,) = s.take(scan(CONN), now=1300.0)
    assert (refresh.ts, refresh.first_seen) == (1300.0, 1000.0)
    stage = counters.stage("sockets")
    assert (stage.seen, stage.emitted, stage.dropped["unchanged"]) == (3, 2, 1)


def test_scan_losses_are_counted() -> None:
    s, counters = scanner()
    s.take(scan(lost=2), now=1.0)
    assert counters.stage("sockets").dropped["netns_unreadable"] == 2
