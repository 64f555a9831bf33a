"""A real conntrack network for the conntrack source's kernel tests.

Four network namespaces joined by veth pairs, no bridge: a "node" routes
between a client and two servers, and its nftables rule sends a "service"
address and port to ONE of the servers::

    client (10.88.1.10, fd88:1::10) <-> node <-> s1 (10.88.2.10, fd88:2::10) :8080
                                            <-> s2 (10.88.3.10, fd88:3::10) :8080
    node: 10.96.0.10:80 -> 10.88.2.10:8080, [fd96::10]:80 -> [fd88:2::10]:8080 (DNAT)
          udp 10.96.0.10:8125 -> 10.88.2.10:8125, udp 10.96.0.10:53 -> 10.88.2.10:8125

The servers log who connected; the client says which local port it had and
whether it was answered. Those logs, the client's own nftables byte counters
and the topology are the truth the records are held to. The node's conntrack
counts bytes (``nf_conntrack_acct=1``). Needs root, ``ip netns`` and ``nft``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from callmap.counters import StageCounters
from callmap.wire import SocketObservation
from capture.conntrack import ConntrackReader, open_conntrack
from capture.ctflows import FlowTracker
from helpers.netns import network_namespaces, wait_for_local_routes

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


def ip(command: str) -> str:
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


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root"
    for tool in ("ip", "nft", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def warm_up(net: CtNet) -> None:
    """Call every server until calls are quick: neighbours resolved, IPv6 link-local
    addresses out of duplicate address detection (a SYN lost to either is resent
    only after a second)."""
    deadline = time.monotonic() + 10
    for address in (*S1.values(), *S2.values()):
        while (call := net.call(address, SERVER_PORT)).seconds > 0.1:
            assert time.monotonic() < deadline, f"calls to {address} stay slow: {call}"
        assert call.outcome == "answered", call


@contextmanager
def ct_network(logs: Path) -> Iterator[CtNet]:
    """The four namespaces, their rules and servers (logging under ``logs``), warmed up."""
    prefix = f"cmlct-{secrets.token_hex(3)}"
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
                ip(f"-n {net.node} link add {outer} type veth peer name eth0 netns {ns}")
                ip(f"-n {ns} addr add {v4}.10/24 dev eth0")
                ip(f"-n {ns} -6 addr add {v6}:10/64 dev eth0 nodad")
                ip(f"-n {ns} link set eth0 up")
                ip(f"-n {ns} route add default via {v4}.1")
                ip(f"-n {ns} -6 route add default via {v6}:1")
                ip(f"-n {net.node} addr add {v4}.1/24 dev {outer}")
                ip(f"-n {net.node} -6 addr add {v6}:1/64 dev {outer} nodad")
                ip(f"-n {net.node} link set {outer} up")
                wait_for_local_routes(ns, f"{v4}.10", f"{v6}:10")
                wait_for_local_routes(net.node, f"{v4}.1", f"{v6}:1")
            ip(f"netns exec {net.node} sysctl -qw net.ipv4.ip_forward=1")
            ip(f"netns exec {net.node} sysctl -qw net.ipv6.conf.all.forwarding=1")
            # Byte counts in DESTROY events; the default on most distributions is off.
            ip(f"netns exec {net.node} sysctl -qw net.netfilter.nf_conntrack_acct=1")
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
            warm_up(net)
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


@contextmanager
def conntrack_source(ct_net: CtNet) -> Iterator[Source]:
    """A tracker (UDP followed) reading the node namespace's events on a thread."""
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
