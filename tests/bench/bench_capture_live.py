"""Benchmark: live DNS capture at rising rates, through a real veth pair.

A sender in one network namespace replays DNS responses from port 53 to a
peer namespace at a fixed rate; the real agent (``callmap capture dns``)
captures in the peer namespace and publishes to a real Kafka broker that this
script starts. For each rate the table shows what was sent, what the agent
accounted for (the sum of ``count`` over the records on the topic), kernel
drops, and the agent's CPU and peak RSS. Goal: zero loss at 20,000 answers/s
or more, RSS under 100 MB. Needs root.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from callmap.broker import ensure_topics, make_consumer
from callmap.config import Settings, load_settings
from callmap.wire import DNS, STATS, decode
from devtools.kafka import DevBroker
from devtools.process import free_port

RATES = [5_000, 10_000, 20_000, 30_000, 40_000]
SECONDS = 5.0
SENDER_IP, AGENT_IP = "10.78.0.1", "10.78.0.2"

# Prebuilt responses (distinct qnames and ids), paced in small bursts.
SENDER = r"""
import socket, struct, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
def response(i):
    labels = (b"h%d" % (i % 5000), b"bench", b"example")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    header = struct.pack("!HHHHHH", i & 0xFFFF, 0x8180, 1, 1, 0, 0)
    address = bytes([10, 79, (i >> 8) & 255, i & 255])
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + address
    return header + qname + b"\x00\x01\x00\x01" + answer
packets = [response(i) for i in range(50_000)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[3], 53))
total = int(rate * seconds)
start = time.perf_counter()
burst = max(1, rate // 1000)
sent = 0
while sent < total:
    for port_offset in range(burst):
        if sent >= total:
            break
        sock.sendto(packets[sent % len(packets)], (sys.argv[4], 20000 + (sent // 50_000)))
        sent += 1
    ahead = sent / rate - (time.perf_counter() - start)
    if ahead > 0:
        time.sleep(ahead)
print(sent, time.perf_counter() - start)
"""


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _make_pair(prefix: str) -> tuple[str, str]:
    sender, agent = f"{prefix}-snd", f"{prefix}-agt"
    for ns in (sender, agent):
        _sh("ip", "netns", "add", ns)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
    _sh(
        "ip",
        "link",
        "add",
        f"{prefix}s",
        "netns",
        sender,
        "type",
        "veth",
        "peer",
        "name",
        f"{prefix}a",
        "netns",
        agent,
    )
    for ns, dev, ip in ((sender, f"{prefix}s", SENDER_IP), (agent, f"{prefix}a", AGENT_IP)):
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
    return sender, agent


def _cpu_and_peak_rss(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kib = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
    )
    return cpu, peak_kib / 1024


async def _counted(settings: Settings, node: str) -> tuple[int, int]:
    """(sum of counts on the DNS topic, kernel drops in the stats) for ``node``."""
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    total = drops = 0
    try:
        partitions = [TopicPartition(DNS.name, 0), TopicPartition(STATS.name, 0)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while batch := await consumer.getmany(timeout_ms=1500):
            for tp, messages in batch.items():
                for message in messages:
                    if message.key != node.encode():
                        continue
                    if tp.topic == DNS.name:
                        total += sum(r.count for r in decode(DNS, message.value).records)  # type: ignore[attr-defined]
                    else:
                        stages = decode(STATS, message.value).stages  # type: ignore[attr-defined]
                        frames = stages.get("dns.frames")
                        drops += frames.dropped.get("kernel_drop", 0) if frames else 0
    finally:
        await consumer.stop()
    return total, drops


def main() -> None:
    if os.geteuid() != 0:
        print("bench_capture_live: needs root for network namespaces; skipped")
        return
    prefix = f"cb{uuid.uuid4().hex[:5]}"
    with tempfile.TemporaryDirectory() as tmp:
        broker = DevBroker(Path(tmp) / "kafka", port=free_port())
        broker.start()
        sender_ns, agent_ns = _make_pair(prefix)
        try:
            settings = load_settings(
                {"CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap, "CALLMAP_TOPIC_PARTITIONS": "1"}
            )
            asyncio.run(ensure_topics(settings.kafka, settings.topics))
            table = Table(title=f"live DNS capture through a veth pair, {SECONDS:.0f} s per rate")
            for column in (
                "target/s",
                "sent",
                "accounted",
                "lost",
                "kernel drops",
                "agent CPU %",
                "peak RSS MB",
            ):
                table.add_column(column, justify="right")
            best = 0
            for rate in RATES:
                node = f"bench-{rate}"
                env = {**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap}
                agent = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "callmap",
                        "--log-level",
                        "WARNING",
                        "capture",
                        "dns",
                        "--netns",
                        agent_ns,
                        "--node",
                        node,
                        "--metrics-port",
                        "0",
                        "--stats-interval",
                        "1",
                    ],
                    env=env,
                )
                time.sleep(2.5)
                cpu_before, _ = _cpu_and_peak_rss(agent.pid)
                sent = subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        sender_ns,
                        sys.executable,
                        "-c",
                        SENDER,
                        str(rate),
                        str(SECONDS),
                        SENDER_IP,
                        AGENT_IP,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                count, elapsed = int(sent.stdout.split()[0]), float(sent.stdout.split()[1])
                time.sleep(2.5)  # the last windows and stats reach Kafka
                cpu_after, rss = _cpu_and_peak_rss(agent.pid)
                agent.terminate()
                agent.wait(timeout=30)
                accounted, drops = asyncio.run(_counted(settings, node))
                lost = count - accounted
                if lost == 0 and drops == 0:
                    best = max(best, rate)
                table.add_row(
                    f"{rate:,}",
                    f"{count:,}",
                    f"{accounted:,}",
                    f"{lost:,}",
                    f"{drops:,}",
                    f"{100 * (cpu_after - cpu_before) / elapsed:.0f}",
                    f"{rss:.0f}",
                )
            Console().print(table)
            print(f"highest rate with zero loss: {best:,} answers/s (goal: >= 20,000)")
        finally:
            for ns in (sender_ns, agent_ns):
                subprocess.run(["ip", "netns", "del", ns], check=False)
            broker.stop()


if __name__ == "__main__":
    main()
