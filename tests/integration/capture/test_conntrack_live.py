"""The conntrack source on this machine's kernel: real connections through a real
DNAT rule, heard in the namespace that routes them.

Four network namespaces joined by veth pairs, no bridge: a "node" routes
between a client and two servers, and its nftables rule sends a "service"
address and port to ONE of the servers::

    client (10.88.1.10, fd88:1::10) <-> node <-> s1 (10.88.2.10, fd88:2::10) :8080
                                            <-> s2 (10.88.3.10, fd88:3::10) :8080
    node: 10.96.0.10:80 -> 10.88.2.10:8080, [fd96::10]:80 -> [fd88:2::10]:8080 (DNAT)
          udp 10.96.0.10:8125 -> 10.88.2.10:8125, udp 10.96.0.10:53 -> 10.88.2.10:8125

The servers log who connected; the client says which local port it had and
whether it was answered. Those logs and the topology are the truth the
records are held to. Each call connects, exchanges a few bytes and closes in
a few milliseconds: too short for a socket-table scan to see it. Needs root,
``ip netns`` and ``nft``; skipped otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.netns import network_namespaces

from callmap.counters import StageCounters
from callmap.errors import ConfigError
from callmap.wire import FlowHealth, SocketObservation
from capture.conntrack import ConntrackReader, counts_bytes, open_conntrack
from capture.ctflows import DROP_DNS_LOOKUP, DROP_QUEUE_OVERFLOW, FlowTracker
from capture.readerthread import SO_RCVBUFFORCE

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[3]
CLIENT = {4: "10.88.1.10", 6: "fd88:1::10"}
S1 = {4: "10.88.2.10", 6: "fd88:2::10"}
S2 = {4: "10.88.3.10", 6: "fd88:3::10"}
SERVICE = {4: "10.96.0.10", 6: "fd96::10"}
SERVICE_PORT, SERVER_PORT, NOBODY_PORT = 80, 8080, 9999
UDP_PORT, DNS_PORT = 8125, 53

RULES = f"""
table inet cmlct {{
  chain prerouting {{
    type nat hook prerouting priority dstnat;
    ip daddr {SERVICE[4]} tcp dport {SERVICE_PORT} dnat ip to {S1[4]}:{SERVER_PORT}
    ip6 daddr {SERVICE[6]} tcp dport {SERVICE_PORT} dnat ip6 to [{S1[6]}]:{SERVER_PORT}
    ip daddr {SERVICE[4]} udp dport {UDP_PORT} dnat ip to {S1[4]}:{UDP_PORT}
    ip daddr {SERVICE[4]} udp dport {DNS_PORT} dnat ip to {S1[4]}:{UDP_PORT}
  }}
}}
"""

SERVER = """
import json, selectors, socket, sys
log = open(sys.argv[1], "a", buffering=1)
selector = selectors.DefaultSelector()
for address in sys.argv[2:]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, 8080))
    listener.listen(64)
    selector.register(listener, selectors.EVENT_READ)
    datagrams = socket.socket(family, socket.SOCK_DGRAM)
    datagrams.bind((address, 8125))
    selector.register(datagrams, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        sock = key.fileobj
        if sock.type == socket.SOCK_DGRAM:
            data, peer = sock.recvfrom(100)
            if data == b"ping?":
                sock.sendto(b"pong", peer)
            local, proto = sock.getsockname()[:2], "udp"
        else:
            conn, peer = sock.accept()
            with conn:
                local = conn.getsockname()[:2]
                asked = conn.recv(100)
                if asked == b"reset":  # close with a reset: SO_LINGER on, timeout 0
                    linger = b"\\1\\0\\0\\0\\0\\0\\0\\0"  # struct linger {1, 0}
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                else:
                    conn.sendall(b"pong " + asked)
            proto = "tcp"
        entry = {"peer": list(peer[:2]), "local": list(local), "proto": proto}
        log.write(json.dumps(entry) + "\\n")
"""

CLIENT_CALL = """
import json, socket, sys, time
host, port, reset = sys.argv[1], int(sys.argv[2]), sys.argv[3:] == ["reset"]
started = time.perf_counter()
family = socket.AF_INET6 if ":" in host else socket.AF_INET
conn = socket.socket(family, socket.SOCK_STREAM)
conn.settimeout(3)
try:
    conn.connect((host, port))
    local = conn.getsockname()[:2]
    conn.sendall(b"reset" if reset else b"ping")
    reply = conn.recv(100)
    outcome = "answered" if reply == b"pong ping" else f"odd reply {reply!r}"
    if reset:
        outcome = "reset" if reply == b"" else outcome
except ConnectionResetError:
    local, outcome = conn.getsockname()[:2], "reset"
except ConnectionRefusedError:
    local, outcome = conn.getsockname()[:2], "refused"
conn.close()
print(json.dumps({"local": list(local), "outcome": outcome,
                  "seconds": time.perf_counter() - started}))
"""


UDP_CALL = """
import json, socket, sys, time
host, port, answer = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "answer"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(3)
sock.connect((host, port))
sock.send(b"ping?" if answer else b"ping")
outcome = "sent"
if answer:
    outcome = "answered" if sock.recv(100) == b"pong" else "odd reply"
print(json.dumps({"local": list(sock.getsockname()[:2]), "outcome": outcome, "seconds": 0}))
"""


BYTE_COUNTERS = f"""
table inet cmlbytes {{
  counter sent {{ }}
  counter received {{ }}
  chain out {{
    type filter hook output priority 0;
    ip daddr {SERVICE[4]} tcp dport {SERVICE_PORT} counter name sent
  }}
  chain in {{
    type filter hook input priority 0;
    ip saddr {SERVICE[4]} tcp sport {SERVICE_PORT} counter name received
  }}
}}
"""

FORGET_FLOW = """
import socket, sys
from pyroute2 import NFCTSocket
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
port = int(sys.argv[1])
ct = NFCTSocket()
for entry in list(ct.dump()):
    orig = entry.get_attr("CTA_TUPLE_ORIG")
    if orig.get_nested("CTA_TUPLE_PROTO", "CTA_PROTO_SRC_PORT") == port:
        ip = orig.get_attr("CTA_TUPLE_IP")
        ct.entry("del", tuple_orig=NFCTAttrTuple(
            saddr=ip.get_attr("CTA_IP_V4_SRC"), daddr=ip.get_attr("CTA_IP_V4_DST"),
            proto=socket.IPPROTO_TCP, sport=port,
            dport=orig.get_nested("CTA_TUPLE_PROTO", "CTA_PROTO_DST_PORT")))
ct.close()
"""


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def _nft(netns: str, command: str, *, check: bool = True) -> str:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "nft",
            *(["-f", "-"] if "\n" in command else command.split()),
        ],
        input=command if "\n" in command else None,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 or not check, f"nft {command}: {done.stderr}"
    return done.stdout


def _ip(command: str) -> str:
    return _run("ip", *command.split())


def wait_for(done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@dataclass(frozen=True)
class Call:
    """What the client itself saw of one call."""

    local_ip: str
    local_port: int
    outcome: str
    seconds: float


@dataclass
class CtNet:
    node: str
    client: str
    s1: str
    s2: str
    logs: dict[str, Path]

    def call(self, host: str, port: int, *, reset: bool = False) -> Call:
        """One TCP call; with ``reset``, the server ends it with a reset."""
        return self._in_client(CLIENT_CALL, host, str(port), *(["reset"] if reset else []))

    def udp_call(self, host: str, port: int, *, answer: bool) -> Call:
        """One datagram to ``host``; with ``answer``, waits for the server's."""
        return self._in_client(UDP_CALL, host, str(port), "answer" if answer else "one-way")

    def _in_client(self, script: str, *args: str) -> Call:
        out = _run("ip", "netns", "exec", self.client, sys.executable, "-c", script, *args)
        found = json.loads(out)
        return Call(found["local"][0], found["local"][1], found["outcome"], found["seconds"])

    def connected(self, server: str, proto: str = "tcp") -> dict[tuple[str, int], tuple[str, int]]:
        """Whom ``server`` (s1 or s2) heard from over ``proto``, from its own log: each
        peer, with the address and port the server saw the connection arrive on."""
        lines = self.logs[server].read_text().splitlines()
        return {
            (entry["peer"][0], entry["peer"][1]): (entry["local"][0], entry["local"][1])
            for entry in map(json.loads, lines)
            if entry["proto"] == proto
        }

    def count_bytes(self) -> None:
        """nftables counters in the client's namespace of the bytes to and from the service."""
        _nft(self.client, "delete table inet cmlbytes", check=False)
        _nft(self.client, BYTE_COUNTERS)

    def counted_bytes(self) -> tuple[int, int]:
        """Bytes the client sent to and got from the service, as its nftables counted them."""
        listed = json.loads(_nft(self.client, "-j list counters table inet cmlbytes"))
        counters = {
            item["counter"]["name"]: item["counter"]["bytes"]
            for item in listed["nftables"]
            if "counter" in item
        }
        return counters["sent"], counters["received"]

    def forget_flow(self, call: Call) -> None:
        """Delete the call's conntrack entry in the node (the kernel then sends its
        DESTROY with the flow's counters), as its timeout would."""
        _run(
            "ip",
            "netns",
            "exec",
            self.node,
            sys.executable,
            "-c",
            FORGET_FLOW,
            str(call.local_port),
        )

    def netns_id(self) -> int:
        """The node namespace's id as a process inside it sees its own ``net/tcp``."""
        return int(
            _run("ip", "netns", "exec", self.node, "stat", "-L", "-c", "%i", "/proc/self/net/tcp")
        )


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root"
    for tool in ("ip", "nft", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _warm_up(net: CtNet) -> None:
    """Call every server until calls are quick: neighbours resolved, IPv6 link-local
    addresses out of duplicate address detection (a SYN lost to either is resent
    only after a second)."""
    deadline = time.monotonic() + 10
    for address in (*S1.values(), *S2.values()):
        while (call := net.call(address, SERVER_PORT)).seconds > 0.1:
            assert time.monotonic() < deadline, f"calls to {address} stay slow: {call}"
        assert call.outcome == "answered", call


@pytest.fixture(scope="module")
def ct_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtNet]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    prefix = f"cmlct-{secrets.token_hex(3)}"
    logs = tmp_path_factory.mktemp("ctservers")
    net = CtNet(
        f"{prefix}-node",
        f"{prefix}-cli",
        f"{prefix}-s1",
        f"{prefix}-s2",
        {"s1": logs / "s1.log", "s2": logs / "s2.log"},
    )
    servers: list[subprocess.Popen[str]] = []
    with network_namespaces(net.node, net.client, net.s1, net.s2):
        try:
            for side, ns, v4, v6 in (
                ("cli", net.client, "10.88.1", "fd88:1:"),
                ("s1", net.s1, "10.88.2", "fd88:2:"),
                ("s2", net.s2, "10.88.3", "fd88:3:"),
            ):
                outer = f"to-{side}"
                # Made inside the node namespace: nothing touches the host's.
                _ip(f"-n {net.node} link add {outer} type veth peer name eth0 netns {ns}")
                _ip(f"-n {ns} addr add {v4}.10/24 dev eth0")
                _ip(f"-n {ns} -6 addr add {v6}:10/64 dev eth0 nodad")
                _ip(f"-n {ns} link set eth0 up")
                _ip(f"-n {ns} route add default via {v4}.1")
                _ip(f"-n {ns} -6 route add default via {v6}:1")
                _ip(f"-n {net.node} addr add {v4}.1/24 dev {outer}")
                _ip(f"-n {net.node} -6 addr add {v6}:1/64 dev {outer} nodad")
                _ip(f"-n {net.node} link set {outer} up")
            _ip(f"netns exec {net.node} sysctl -qw net.ipv4.ip_forward=1")
            _ip(f"netns exec {net.node} sysctl -qw net.ipv6.conf.all.forwarding=1")
            # Byte counts in DESTROY events; the default on most distributions is off.
            _ip(f"netns exec {net.node} sysctl -qw net.netfilter.nf_conntrack_acct=1")
            nft = subprocess.run(
                ["ip", "netns", "exec", net.node, "nft", "-f", "-"],
                input=RULES,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert nft.returncode == 0, nft.stderr
            for name, ns, addresses in (("s1", net.s1, S1), ("s2", net.s2, S2)):
                log = str(net.logs[name])
                server = subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        sys.executable,
                        "-c",
                        SERVER,
                        log,
                        *addresses.values(),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                servers.append(server)
                assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            _warm_up(net)
            yield net
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)


@dataclass
class Source:
    reader: ConntrackReader
    stage: StageCounters
    netns: int
    records: list[SocketObservation]

    def until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        """Flush every 50 ms into ``records`` until ``done()`` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            self.records += self.reader.flush(time.time())
            if done() or time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def of(self, call: Call) -> list[SocketObservation]:
        return [
            r
            for r in self.records
            if (r.local_ip, r.local_port) == (call.local_ip, call.local_port)
        ]


@pytest.fixture
def source(ct_net: CtNet) -> Iterator[Source]:
    opened = open_conntrack(ct_net.node)
    stage = StageCounters()
    tracker = FlowTracker(
        cluster="lab", node="node-a", netns=opened.netns, counters=stage, udp=True
    )
    reader = ConntrackReader(opened, tracker)
    reader.start()
    try:
        yield Source(reader, stage, opened.netns, [])
    finally:
        reader.stop()
        assert reader.failure() is None


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


def test_a_connect_nobody_answers_is_no_call_but_a_failed_connect(
    ct_net: CtNet, source: Source
) -> None:
    call = ct_net.call(S2[4], NOBODY_PORT)
    assert call.outcome == "refused"  # the client's own view
    source.until(lambda: bool(source.of(call)))
    (record,) = source.of(call)
    assert (record.remote_ip, record.remote_port) == (S2[4], NOBODY_PORT)
    assert record.health == FlowHealth(failed=1)  # opened nothing: health alone, no call


def test_health_of_calls_matches_what_the_client_saw_and_its_own_byte_counters(
    ct_net: CtNet, source: Source
) -> None:
    """One call closed in order, one reset by the server: the health the tracker tells
    of the service's calls against the client's own outcomes, and its bytes against
    nftables counters in the client's namespace (the same packets, counted apart)."""
    ct_net.count_bytes()
    calls = [ct_net.call(SERVICE[4], SERVICE_PORT, reset=reset) for reset in (False, True)]
    assert [call.outcome for call in calls] == ["answered", "reset"]
    sent, received = ct_net.counted_bytes()

    def told() -> FlowHealth:  # the calls of one client and service fold into one record
        return _total([r for r in source.records if r.dialled_ip == SERVICE[4]])

    source.until(lambda: told().closed >= 2)  # TIME_WAIT and CLOSE: no DESTROY needed
    for call in calls:  # end them now, as their timeouts and a GC pass would later
        ct_net.forget_flow(call)
    source.until(lambda: told().bytes_sent == sent)
    assert told() == FlowHealth(
        opened=2, closed=2, resets=1, bytes_sent=sent, bytes_received=received
    )


def _total(records: list[SocketObservation]) -> FlowHealth:
    total = FlowHealth()
    for record in records:
        assert record.health is not None
        total = total.plus(record.health)
    return total


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


def test_whether_a_namespace_counts_conntrack_bytes_is_read_from_its_own_sysctl(
    ct_net: CtNet,
) -> None:
    _ip(f"netns exec {ct_net.client} sysctl -qw net.netfilter.nf_conntrack_acct=0")
    assert counts_bytes(ct_net.node) is True  # the fixture turned it on there only
    assert counts_bytes(ct_net.client) is False
    assert counts_bytes("cmlct-no-such-namespace") is None
