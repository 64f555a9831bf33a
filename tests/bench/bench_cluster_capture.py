"""Benchmark: the capture agent on a real node, as the Helm chart runs it, at rising DNS rates.

Starts a development cluster of its own (two nodes; docs/cluster.md), installs
callmap with its chart (capture only: the other components are off, so the
node's CPU goes to DNS and capture), and runs a load pod on node-1 that asks
CoreDNS (the ``kube-dns`` Service, through kube-proxy) for cluster names at a
fixed rate over UDP. For each offered rate the table shows the answers the
load pod got back per second, the DNS answers capture parsed per second (its
own counter; an answer crossing several of the node's interfaces is one), and
the capture process's CPU (share of one core) and RSS, read from this
machine's /proc. The baseline, measured in the same run, is the node with the
load and no capture agent. Needs root. Prints a table; never fails on numbers.

Anchors (docs/deploy.md): Coroot's node agent about 200m CPU at 10k requests/s;
NetObserv's eBPF agents about 0.08 CPU for three nodes at 3.5k flows/s.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from callmap.wire import DROP_KERNEL
from devcluster.cluster import REPO, DevCluster

RATES = [1_000, 2_000, 4_000, 8_000, 12_000, 16_000, 24_000]
SECONDS = 20.0
TICK = 1 / 100  # the load pod sends in bursts of rate/100, every 10 ms

# Stdlib only (it runs in the callmap image): paced UDP queries to CoreDNS,
# counting the answers; prints JSON with what it sent and got.
LOAD = r"""
import contextlib, json, socket, struct, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
names = ["kube-dns.kube-system.svc.cluster.local", "kubernetes.default.svc.cluster.local"]
def query(i, name):
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname + b"\0\1\0\1"
packets = [query(i, names[i % 2]) for i in range(65536)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.connect(("10.96.0.10", 53))
sock.setblocking(False)
sent = got = 0
burst = max(1, int(rate * 0.01))
start = time.perf_counter()
while (now := time.perf_counter()) - start < seconds:
    due = int((now - start) * rate)
    while sent < due:
        for _ in range(burst):
            with contextlib.suppress(BlockingIOError):  # a full socket buffer: not sent
                sock.send(packets[sent & 0xFFFF])
            sent += 1
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(512); got += 1
    time.sleep(0.001)
time.sleep(0.5)
with contextlib.suppress(BlockingIOError):
    while True:
        sock.recv(512); got += 1
print(json.dumps({"sent": sent, "got": got, "seconds": time.perf_counter() - start}))
"""


def capture_pid(cluster: DevCluster, node: str) -> int | None:
    """This machine's pid of the capture agent on ``node`` (found by its pod's cgroup path)."""
    root = f"/callmap/{cluster.name}/{node}/".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            agent = cmdline[1:3] == [b"/opt/callmap/bin/callmap", b"capture"]
            if agent and root in (proc / "cgroup").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def rss_mb(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def frame_counts(node_address: str) -> tuple[float, float]:
    """Capture's counts of DNS frames: read off its packet socket, and dropped by the kernel
    before it could read them (its Prometheus counters).

    One answer crosses several of the node's interfaces (the pod's veth, the
    bridge, eth0 when it comes from the other node), and each copy is a frame.
    """
    text = urllib.request.urlopen(f"http://{node_address}:9808/metrics", timeout=5).read()
    seen = kernel = 0.0
    for line in text.decode().splitlines():
        if line.startswith('callmap_capture_seen_total{stage="dns.frames"}'):
            seen = float(line.split()[-1])
        if line.startswith(f'callmap_capture_dropped_total{{reason="{DROP_KERNEL}"'):
            kernel = float(line.split()[-1])
    return seen - kernel, kernel


def load(cluster: DevCluster, rate: int) -> dict[str, float]:
    name = f"load-{rate}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": "node-1",
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "load",
                    "image": cluster.status().images["callmap"],
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", LOAD, str(rate), str(SECONDS)],
                }
            ],
        },
    }
    cluster.apply([pod])
    cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}", "--timeout=120s"
    )
    result: dict[str, float] = json.loads(cluster.kubectl("logs", name))
    cluster.kubectl("delete", "pod", name, "--wait=false")
    return result


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="callmap-bench-") as directory:
        cluster = DevCluster(Path(directory), "bench", node_count=2)
        try:
            cluster.start()
            node = cluster.layout.node("node-1")
            baseline = {rate: load(cluster, rate) for rate in RATES[:1]}
            off = {"enabled": False}
            cluster.install_callmap(
                REPO,
                {"watch": off, "streams": off, "sinks": {"sqlite": off}},
            )
            pid = capture_pid(cluster, "node-1")
            assert pid is not None, "no capture agent on node-1"
            table = Table(title=f"capture on a real node, {SECONDS:.0f} s per rate (node-1)")
            for column in (
                "offered/s",
                "answered/s",
                "frames read/s",
                "kernel drops/s",
                "CPU",
                "RSS MB",
                "peak",
            ):
                table.add_column(column, justify="right")
            for rate in RATES:
                cpu, (read, lost) = cpu_seconds(pid), frame_counts(node.address)
                result = load(cluster, rate)
                rss, peak = rss_mb(pid)
                read_after, lost_after = frame_counts(node.address)
                table.add_row(
                    f"{rate:,}",
                    f"{result['got'] / result['seconds']:,.0f}",
                    f"{(read_after - read) / result['seconds']:,.0f}",
                    f"{(lost_after - lost) / result['seconds']:,.0f}",
                    f"{(cpu_seconds(pid) - cpu) / result['seconds']:.1%}",
                    f"{rss:.0f}",
                    f"{peak:.0f}",
                )
            answered = baseline[RATES[0]]["got"] / baseline[RATES[0]]["seconds"]
            table.caption = (
                f"baseline without capture: {RATES[0]:,}/s offered, {answered:,.0f}/s answered; "
                "CPU: the agent's CPU seconds over the load's seconds (share of one core)"
            )
            console.print(table)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
