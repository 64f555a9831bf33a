"""The conntrack source on this machine's kernel: real connections through a real
DNAT rule, heard in the namespace that routes them (:mod:`helpers.ctnet`).

Each call connects, exchanges a few bytes and closes in a few milliseconds:
too short for a socket-table scan to see it. Skipped without root, ``ip
netns`` or ``nft``.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.ctnet import (
    CLIENT,
    DNS_PORT,
    S1,
    S2,
    SERVER_PORT,
    SERVICE,
    SERVICE_PORT,
    UDP_PORT,
    CtNet,
    Source,
    wait_for,
)

from callmap.counters import StageCounters
from callmap.errors import ConfigError
from callmap.wire import SocketObservation
from capture.conntrack import ConntrackReader, open_conntrack
from capture.ctflows import DROP_DNS_LOOKUP, DROP_QUEUE_OVERFLOW, FlowTracker
from capture.readerthread import SO_RCVBUFFORCE

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_a_call_to_a_service_names_the_one_backend_that_answered(
    ct_net: CtNet, source: Source, family: int
) -> None:
    call = ct_net.call(SERVICE[family], SERVICE_PORT)
    assert call.outcome == "answered" and call.local_ip == CLIENT[family]
    assert call.seconds < 0.5  # a few ms here: gone before any socket scan could see it
    # The truth: s1 accepted this very connection on its own address, s2 never saw it.
    client = (call.local_ip, call.local_port)
    assert ct_net.connected("s1")[client] == (S1[family], SERVER_PORT)
    assert client not in ct_net.connected("s2")
    source.until(lambda: bool(source.of(call)))
    (record,) = source.of(call)
    assert (record.remote_ip, record.remote_port) == (S1[family], SERVER_PORT)
    assert (record.dialled_ip, record.dialled_port) == (SERVICE[family], SERVICE_PORT)
    assert (record.origin, record.role, record.pod_uid) == ("conntrack", "client", None)
    assert (record.cluster, record.node) == ("lab", "node-a")
    assert record.netns == source.netns == ct_net.netns_id()
    assert record.first_seen <= record.ts


def test_a_direct_call_names_its_server_and_nothing_dialled(ct_net: CtNet, source: Source) -> None:
    call = ct_net.call(S2[4], SERVER_PORT)
    assert call.outcome == "answered"
    assert ct_net.connected("s2")[(call.local_ip, call.local_port)] == (S2[4], SERVER_PORT)
    source.until(lambda: bool(source.of(call)))
    (record,) = source.of(call)
    assert (record.remote_ip, record.remote_port) == (S2[4], SERVER_PORT)
    assert (record.dialled_ip, record.dialled_port) == (None, None)


@pytest.mark.parametrize("answer", [False, True], ids=["one-way", "request-answer"])
def test_a_udp_call_to_a_service_names_its_backend_answered_or_not(
    ct_net: CtNet, source: Source, answer: bool
) -> None:
    call = ct_net.udp_call(SERVICE[4], UDP_PORT, answer=answer)
    assert call.outcome == ("answered" if answer else "sent")
    client = (call.local_ip, call.local_port)
    wait_for(lambda: client in ct_net.connected("s1", "udp"))  # the server's own log
    assert ct_net.connected("s1", "udp")[client] == (S1[4], UDP_PORT)
    source.until(lambda: bool(source.of(call)))
    (record,) = source.of(call)
    assert (record.transport, record.remote_ip, record.remote_port) == ("udp", S1[4], UDP_PORT)
    assert (record.dialled_ip, record.dialled_port) == (SERVICE[4], UDP_PORT)
    assert (record.origin, record.role) == ("conntrack", "client")


def test_a_udp_flow_to_port_53_is_a_dns_lookup_and_no_call(ct_net: CtNet, source: Source) -> None:
    call = ct_net.udp_call(SERVICE[4], DNS_PORT, answer=True)
    assert call.outcome == "answered"  # it reached s1, through the rule for port 53
    # Two events, each counted: the NEW at the query, the UPDATE at the answer.
    source.until(lambda: source.stage.dropped[DROP_DNS_LOOKUP] >= 2)
    assert source.stage.dropped[DROP_DNS_LOOKUP] == 2 and source.of(call) == []


def test_events_lost_to_a_full_queue_are_counted_and_reading_goes_on(
    ct_net: CtNet, caplog: pytest.LogCaptureFixture
) -> None:
    opened = open_conntrack(ct_net.node, rcvbuf=1)  # the kernel's least: a few events
    stage = StageCounters()
    tracker = FlowTracker(cluster="lab", node="node-a", netns=opened.netns, counters=stage)
    reader = ConntrackReader(opened, tracker)
    try:
        for _ in range(8):  # about six events each, none read yet
            assert ct_net.call(S2[4], SERVER_PORT).outcome == "answered"
        with caplog.at_level(logging.WARNING, logger="capture.conntrack"):
            reader.start()
            time.sleep(0.5)
            assert stage.dropped[DROP_QUEUE_OVERFLOW] >= 1
            # Room again (a queue this small overflows on one call's burst of
            # events), and the next call is heard.
            opened.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
            after = ct_net.call(SERVICE[4], SERVICE_PORT)
            records: list[SocketObservation] = []
            deadline = time.monotonic() + 5
            while not any(r.local_port == after.local_port for r in records):
                assert time.monotonic() < deadline, "no record of the call after the overflow"
                records += reader.flush(time.time())
                time.sleep(0.05)
        assert reader.failure() is None
    finally:
        reader.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "capture.conntrack"]
    assert len(warnings) == 1 and "conntrack events were lost" in warnings[0]


OPEN_WITHOUT_NET_ADMIN = """
import sys
from callmap.errors import ConfigError
from capture.conntrack import open_conntrack
try:
    open_conntrack(sys.argv[1])
except ConfigError as exc:
    print(exc)
"""

READ_AFTER_THE_SWITCH = """
import json, os, sys, time
from callmap.counters import StageCounters
from capture.conntrack import ConntrackReader, counts_bytes, open_conntrack
from capture.readerthread import SO_RCVBUFFORCE
from capture.ctflows import FlowTracker
from capture.privileges import capabilities, drop_to
opened = open_conntrack(sys.argv[1])
drop_to(10002, 10002)
status = open("/proc/self/status").read()
tracker = FlowTracker(cluster="lab", node="n", netns=opened.netns, counters=StageCounters())
reader = ConntrackReader(opened, tracker)
reader.start()
print(json.dumps({"uid": os.getuid(), "effective": capabilities(status)}), flush=True)
records, deadline = [], time.monotonic() + 10
while not records and time.monotonic() < deadline:
    records = [r for r in reader.flush(time.time()) if r.remote_port == 8080]
    time.sleep(0.05)
reader.stop()
print(json.dumps([[r.local_port, r.remote_ip, r.dialled_ip] for r in records]), flush=True)
"""


def test_subscribing_needs_cap_net_admin(ct_net: CtNet) -> None:
    done = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-net_admin",
            "--inh-caps=-net_admin",
            sys.executable,
            "-c",
            OPEN_WITHOUT_NET_ADMIN,
            ct_net.node,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "needs CAP_NET_ADMIN" in done.stdout


def test_a_socket_opened_before_dropping_privileges_keeps_hearing_calls(ct_net: CtNet) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", READ_AFTER_THE_SWITCH, ct_net.node],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        switched = json.loads(child.stdout.readline() or "null")
        assert switched == {"uid": 10002, "effective": 0}, child.stderr and child.stderr.read()
        call = ct_net.call(SERVICE[4], SERVICE_PORT)
        heard = json.loads(child.stdout.readline())
        assert heard == [[call.local_port, S1[4], SERVICE[4]]]
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_missing_namespace_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no network namespace"):
        open_conntrack("cmlct-no-such-namespace")
