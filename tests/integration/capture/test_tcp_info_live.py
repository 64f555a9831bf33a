"""A scanned client socket's RTT and retransmits (``--tcp-info``), on this machine's kernel.

Two network namespaces joined by a veth pair; the server's namespace drops
every twentieth packet the client sends it (an nftables rule), so every bulk
send loses segments and TCP retransmits them. (A token bucket with a small
queue lost packets too, but not always on the second burst: TCP had learnt
the link's rate from the first.) A client process in one namespace and a
server process in the other hold a connection; the client sends a burst when
told, and the server acknowledges once it has every byte, so the connection
is idle when scanned. The truth is what ``ss -tin`` (iproute2's own reading
of the kernel) shows for that socket at the same moment: its ``rtt`` and the
total of its ``retrans``. Needs root, ``ip netns`` and ``nft``; skipped
otherwise.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers.netns import network_namespaces

from callmap.counters import Counters
from callmap.wire import SocketObservation
from capture.procscan import namespace_id
from capture.sockagent import SocketScanner

pytestmark = pytest.mark.netns

CLIENT_IP, SERVER_IP, PORT = "10.79.0.1", "10.79.0.2", 7411
BURST = 400_000  # bytes a send: about 280 segments, 14 of them dropped

DROPS = f"""
table inet cmdrop {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport {PORT} numgen inc mod 20 == 10 drop
  }}
}}
"""

SERVER = f"""
import socket, struct
listener = socket.create_server(("{SERVER_IP}", {PORT}))
print("listening", flush=True)
conn, _ = listener.accept()
while True:
    head = conn.recv(8, socket.MSG_WAITALL)
    if len(head) < 8:
        break
    left = struct.unpack("!Q", head)[0]
    while left:
        left -= len(conn.recv(min(left, 65536)))
    conn.sendall(b"k")
"""

CLIENT = f"""
import socket, struct, sys
conn = socket.create_connection(("{SERVER_IP}", {PORT}), timeout=60)
print(conn.getsockname()[1], flush=True)
for line in sys.stdin:
    size = int(line)
    conn.sendall(struct.pack("!Q", size) + b"x" * size)
    assert conn.recv(1) == b"k"
    print("sent", flush=True)
"""


def _skip_reason() -> str | None:
    if sys.platform != "linux" or shutil.which("ip") is None or shutil.which("nft") is None:
        return "needs Linux with ip and nft"
    if shutil.which("ss") is None:
        return "needs ss (iproute2)"
    return None


@dataclass
class Pair:
    """The client and server processes of one held connection."""

    client_netns: str
    client: subprocess.Popen[str]
    server: subprocess.Popen[str]
    client_port: int

    def send(self, size: int) -> None:
        """A burst of ``size`` bytes, returned once the server has all of it."""
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(f"{size}\n")
        self.client.stdin.flush()
        assert self.client.stdout.readline().strip() == "sent"

    def kernel_says(self) -> tuple[float, int]:
        """``ss``'s RTT (µs) and total retransmits of the client's socket."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.client_netns, "ss", "-tinH", "state", "established"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = out.split(f"{CLIENT_IP}:{self.client_port}", 1)
        assert len(found) == 2, out
        info = found[1]
        rtt = re.search(r"\brtt:([0-9.]+)/", info)
        assert rtt is not None, info
        retrans = re.search(r"\bretrans:\d+/(\d+)", info)
        return float(rtt.group(1)) * 1000, int(retrans.group(1)) if retrans else 0


@pytest.fixture
def pair() -> Iterator[Pair]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    client_ns, server_ns = f"cmtcp-c-{tag}", f"cmtcp-s-{tag}"
    with network_namespaces(client_ns, server_ns):
        for command in (
            f"ip link add cmtc-{tag} netns {client_ns} type veth peer cmts-{tag} netns {server_ns}",
            f"ip -n {client_ns} addr add {CLIENT_IP}/24 dev cmtc-{tag}",
            f"ip -n {server_ns} addr add {SERVER_IP}/24 dev cmts-{tag}",
            # One segment a packet: the drops count segments, not 64 kB GSO batches.
            f"ip -n {client_ns} link set cmtc-{tag} gso_max_segs 1 up",
            f"ip -n {server_ns} link set cmts-{tag} up",
        ):
            subprocess.run(command.split(), check=True, capture_output=True)
        subprocess.run(
            ["ip", "netns", "exec", server_ns, "nft", "-f", "-"], input=DROPS, text=True, check=True
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        client = None
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "listening"
            client = subprocess.Popen(
                ["ip", "netns", "exec", client_ns, sys.executable, "-c", CLIENT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert client.stdout is not None
            yield Pair(client_ns, client, server, int(client.stdout.readline()))
        finally:
            for process in (client, server):
                if process is not None:
                    process.kill()
                    process.wait()


def scanner_in(process: subprocess.Popen[str], *, tcp_info: bool = True) -> SocketScanner:
    """A scanner of ``process``'s namespace that reports a connection at every scan."""
    return SocketScanner(
        cluster="test",
        node="node-a",
        counters=Counters().stage("sockets"),
        refresh_interval=0.01,
        only_netns=frozenset({namespace_id(f"/proc/{process.pid}")}),
        tcp_info=tcp_info,
    )


def the_call(observations: list[SocketObservation]) -> SocketObservation:
    (call,) = [o for o in observations if (o.remote_ip, o.remote_port) == (SERVER_IP, PORT)]
    return call


def test_a_client_socket_reports_the_rtt_and_retransmits_the_kernel_shows(pair: Pair) -> None:
    scanner = scanner_in(pair.client)
    pair.send(BURST)
    rtt_us, retransmits = pair.kernel_says()
    call = the_call(asyncio.run(scanner.scan_once()))
    assert call.role == "client" and call.health is not None and call.health.rtt is not None
    assert call.health.rtt.samples == 1
    assert call.health.rtt.sum_us == pytest.approx(rtt_us, abs=1)  # ss rounds to 1 µs
    assert retransmits > 0, "nothing was dropped: the test proves nothing"
    assert call.health.retransmits == retransmits  # its first report: all of them

    pair.send(BURST)  # more losses: a later report tells only the new ones
    _, retransmits_now = pair.kernel_says()
    again = the_call(asyncio.run(scanner.scan_once()))
    assert again.health is not None
    assert again.health.retransmits == retransmits_now - retransmits
    assert retransmits_now > retransmits


def test_the_servers_side_tells_no_health(pair: Pair) -> None:
    pair.send(1000)
    observed = asyncio.run(scanner_in(pair.server).scan_once())
    (served,) = [o for o in observed if o.local_port == PORT]
    assert served.role == "server" and served.health is None  # its RTT is the client's to tell


def test_without_tcp_info_no_health_is_read(pair: Pair) -> None:
    pair.send(1000)
    scanner = scanner_in(pair.client, tcp_info=False)
    assert the_call(asyncio.run(scanner.scan_once())).health is None
