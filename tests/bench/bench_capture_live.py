"""Benchmark: the highest DNS answer rate live capture holds without loss, through a veth.

A sender in one network namespace replays DNS responses from port 53 to a
peer namespace at a fixed rate; in the peer namespace the real agent
(``callmap capture dns``, publishing to a real Kafka broker this script
starts) reading its socket through its receive ring (the default), the agent
reading it a ``recv`` a frame (``--no-ring``), or a plain AF_PACKET recv loop
(the agent's own socket, with its BPF filter and buffer, that only counts)
receives them; the agent reading its ring is also run with every DNS response
parsed in Python (``CALLMAP_PURE_PYTHON=1``), next to the default that reads
the usual response in C. Measure, do not target:
for each receiver the offered rate rises by half until the first loss (or
until the sender cannot offer more), then is bisected between the last
lossless rate and the first lossy one. A rate is lossless when every answer
sent is accounted for (the agent: the sum of ``count`` over the records on
the topic; the loop: packets read), the kernel dropped none, and the agent
kept up: no message reached Kafka more than ``MAX_DELAY`` after the newest
answer in it was captured (an agent whose publishing falls behind holds its
backlog in its outbox, and loses it once the outbox is full: a trial of
seconds would miss that loss, but not the delay growing). The tables show
each trial, with the receiver's CPU, peak RSS and worst delay; the summary
the highest lossless rate of each, side by side, from the same run. Needs
root.

The sender replays 50,000 answers (5,000 names, 50,000 addresses), so above
50,000/s a one-second window folds each about twice. ``--distinct`` sends a
new name and address with every answer instead: nothing folds, and every
answer is a record to encode and publish, the agent's worst case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ratesearch
from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from callmap.broker import ensure_topics, make_consumer
from callmap.config import Settings, load_settings
from callmap.wire import DNS, STATS, decode
from capture.native import PURE_PYTHON_ENV
from devtools.kafka import DevBroker
from devtools.process import free_port

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # tests/
from helpers.netns import network_namespaces  # noqa: E402

FIRST_RATE = 10_000
RISE = 1.5
BISECTIONS = 3
SECONDS = 5.0
SENDER_SHORT = 0.95
"""A trial whose sender offered less than this share of its target ends the rise."""
MAX_DELAY = 2.0
"""Seconds from the newest answer of a message to its Kafka timestamp (the send) that
still count as keeping up: a flush window (1 s) and then some."""
SENDER_IP, AGENT_IP = "10.78.0.1", "10.78.0.2"
TRAFFIC = "repeating"
"""What the sender replays: ``repeating`` or ``distinct`` (``--distinct``)."""

# Prebuilt responses, paced in small bursts: 50,000 answers repeated (5,000 names,
# 50,000 addresses), or with "distinct" a new name and address for every answer.
# Each burst is one sendmmsg call (through ctypes: Python's socket has none), so the
# sender's own interpreter is not what limits the rate offered.
SENDER = r"""
import ctypes, socket, struct, sys, time
rate, seconds, distinct = int(sys.argv[1]), float(sys.argv[2]), sys.argv[5] == "distinct"
total = int(rate * seconds)
def response(i):
    labels = (b"h%d" % (i if distinct else i % 5000), b"bench", b"example")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    header = struct.pack("!HHHHHH", i & 0xFFFF, 0x8180, 1, 1, 0, 0)
    address = bytes([10, 79 + (i >> 16), (i >> 8) & 255, i & 255])
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + address
    return header + qname + b"\x00\x01\x00\x01" + answer
packets = [response(i) for i in range(total if distinct else 50_000)]

class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]
libc = ctypes.CDLL(None, use_errno=True)
blob = ctypes.create_string_buffer(b"".join(packets))
offsets, at = [], ctypes.addressof(blob)
for packet in packets:
    offsets.append(at)
    at += len(packet)
# One destination port for each 50,000 answers sent, as the answers' clients.
ports = [struct.pack("=H2s4s8x", socket.AF_INET, struct.pack("!H", 20000 + n),
                     socket.inet_aton(sys.argv[4])) for n in range(total // 50_000 + 1)]
names = [ctypes.create_string_buffer(port, len(port)) for port in ports]
iovs = (IoVec * total)()
messages = (MMsgHdr * total)()
for n in range(total):
    packet = n % len(packets)
    iovs[n].base, iovs[n].len = offsets[packet], len(packets[packet])
    header = messages[n].hdr
    header.name, header.namelen = ctypes.addressof(names[n // 50_000]), 16
    header.iov, header.iovlen = ctypes.addressof(iovs) + n * ctypes.sizeof(IoVec), 1
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[3], 53))
fd, size = sock.fileno(), ctypes.sizeof(MMsgHdr)
start = time.perf_counter()
burst = max(1, rate // 10_000)  # a burst every 0.1 ms: about as smooth as a send a packet
sent = 0
while sent < total:
    done = libc.sendmmsg(fd, ctypes.byref(messages, sent * size), min(burst, total - sent), 0)
    if done < 0:
        raise OSError(ctypes.get_errno(), "sendmmsg")
    sent += done
    ahead = sent / rate - (time.perf_counter() - start)
    if ahead > 0:
        time.sleep(ahead)
print(sent, time.perf_counter() - start)
"""


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _link(prefix: str, sender: str, agent: str) -> None:
    """A veth pair between the sender's namespace and the agent's, addressed and up."""
    _sh("ip", "link", "add", f"{prefix}s", "netns", sender,
        "type", "veth", "peer", "name", f"{prefix}a", "netns", agent)  # fmt: skip
    for ns, dev, ip in ((sender, f"{prefix}s", SENDER_IP), (agent, f"{prefix}a", AGENT_IP)):
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")


def _cpu_and_peak_rss(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kib = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
    )
    return cpu, peak_kib / 1024


async def _counted(settings: Settings, node: str) -> tuple[int, int, float]:
    """(sum of counts on the DNS topic, kernel drops in the stats, the worst delay of a
    DNS message: its Kafka timestamp after its newest answer's capture) for ``node``."""
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    total = drops = 0
    delay = 0.0
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
                        records = decode(DNS, message.value).records  # type: ignore[attr-defined]
                        total += sum(r.count for r in records)
                        newest = max(r.ts for r in records)
                        delay = max(delay, message.timestamp / 1000 - newest)
                    else:
                        stages = decode(STATS, message.value).stages  # type: ignore[attr-defined]
                        frames = stages.get("dns.frames")
                        drops += frames.dropped.get("kernel_drop", 0) if frames else 0
    finally:
        await consumer.stop()
    return total, drops, delay


# The plain loop: the agent's own capture socket (BPF filter, 16 MiB buffer), read and
# counted until the sender is done and the socket has been idle for 2 s.
PLAIN_LOOP = r"""
import socket, struct, sys
from capture.sniffer import open_interface
sock = open_interface(sys.argv[1])
sock.settimeout(2.0)
print("ready", flush=True)
received, buffer = 0, bytearray(65536)
while True:
    try:
        sock.recv_into(buffer)
    except TimeoutError:
        if received:
            break
        continue
    received += 1
packets, drops = struct.unpack("II", sock.getsockopt(263, 6, 8))  # PACKET_STATISTICS
print(received, drops, flush=True)
"""


@dataclass(frozen=True, slots=True)
class Trial:
    target: int
    sent: int
    seconds: float
    accounted: int
    drops: int
    cpu: float
    """Share of one core the receiver used while the sender ran."""
    rss_mb: float
    delay: float = 0.0
    """The worst delay of a message to Kafka (the agent's; 0 for the plain loop)."""

    @property
    def offered(self) -> float:
        return self.sent / self.seconds

    @property
    def lossless(self) -> bool:
        return self.accounted == self.sent and self.drops == 0 and self.delay <= MAX_DELAY


def _send(sender_ns: str, rate: int) -> tuple[int, float]:
    done = subprocess.run(
        ["ip", "netns", "exec", sender_ns, sys.executable, "-c", SENDER,
         str(rate), str(SECONDS), SENDER_IP, AGENT_IP, TRAFFIC],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    count, elapsed = done.stdout.split()
    return int(count), float(elapsed)


def agent_trial(
    settings: Settings,
    bootstrap: str,
    namespaces: tuple[str, str],
    reading: str,
    rate: int,
    pure_python: bool = False,
) -> Trial:
    """One trial of the agent, reading its socket with ``reading`` (``--ring`` or not);
    with ``pure_python``, parsing every DNS response in Python (``CALLMAP_PURE_PYTHON``)."""
    sender_ns, agent_ns = namespaces
    node = f"bench-{rate}-{uuid.uuid4().hex[:4]}"
    env = {**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": bootstrap}
    env[PURE_PYTHON_ENV] = "1" if pure_python else "0"
    agent = subprocess.Popen(
        [sys.executable, "-m", "callmap", "--log-level", "WARNING", "capture", "dns",
         "--netns", agent_ns, "--node", node, "--metrics-port", "0", "--stats-interval", "1",
         reading],
        env=env,
    )  # fmt: skip
    try:
        time.sleep(2.5)
        cpu_before, _ = _cpu_and_peak_rss(agent.pid)
        sent, elapsed = _send(sender_ns, rate)
        time.sleep(2.5)  # the last windows and stats reach Kafka
        cpu_after, rss = _cpu_and_peak_rss(agent.pid)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    accounted, drops, delay = asyncio.run(_counted(settings, node))
    cpu = (cpu_after - cpu_before) / elapsed
    return Trial(rate, sent, elapsed, accounted, drops, cpu, rss, delay)


def plain_trial(namespaces: tuple[str, str], device: str, rate: int) -> Trial:
    sender_ns, agent_ns = namespaces
    root = str(Path(__file__).resolve().parents[2])
    loop = subprocess.Popen(
        ["ip", "netns", "exec", agent_ns, sys.executable, "-c", PLAIN_LOOP, device],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    try:
        assert loop.stdout is not None and loop.stdout.readline().strip() == "ready"
        pid = loop.pid  # ip netns exec execs the interpreter: the same process
        cpu_before, _ = _cpu_and_peak_rss(pid)
        sent, elapsed = _send(sender_ns, rate)
        cpu_after, rss = _cpu_and_peak_rss(pid)
        received, drops = map(int, loop.stdout.readline().split())
    finally:
        loop.wait(timeout=30)
    return Trial(rate, sent, elapsed, received, drops, (cpu_after - cpu_before) / elapsed, rss)


def search(trial: Callable[[int], Trial]) -> list[Trial]:
    """Raise the rate until the first loss (or the sender's limit), then bisect."""
    return ratesearch.search(
        trial,
        first=FIRST_RATE,
        rise=RISE,
        bisections=BISECTIONS,
        resolution=1000,
        short=lambda one, rate: one.offered < SENDER_SHORT * rate,
    )


def table_of(title: str, trials: list[Trial]) -> Table:
    table = Table(title=title)
    for column in ("target/s", "offered/s", "sent", "accounted", "lost", "kernel drops",
                   "CPU % of a core", "peak RSS MB", "worst delay s"):  # fmt: skip
        table.add_column(column, justify="right")
    for t in trials:
        table.add_row(
            f"{t.target:,}", f"{t.offered:,.0f}", f"{t.sent:,}", f"{t.accounted:,}",
            f"{t.sent - t.accounted:,}", f"{t.drops:,}", f"{100 * t.cpu:.0f}", f"{t.rss_mb:.0f}",
            f"{t.delay:.1f}",
        )  # fmt: skip
    return table


def main() -> None:
    global TRAFFIC
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="a new name and address for every answer (nothing folds) instead of "
        "50,000 answers repeated",
    )
    TRAFFIC = "distinct" if parser.parse_args().distinct else "repeating"
    if os.geteuid() != 0:
        print("bench_capture_live: needs root for network namespaces; skipped")
        return
    prefix = f"cb{uuid.uuid4().hex[:5]}"
    console = Console()
    sender, agent = f"{prefix}-snd", f"{prefix}-agt"
    with tempfile.TemporaryDirectory() as tmp, network_namespaces(sender, agent):
        _link(prefix, sender, agent)
        namespaces = (sender, agent)
        broker = DevBroker(Path(tmp) / "kafka", port=free_port())
        broker.start()
        try:
            settings = load_settings(
                {"CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap, "CALLMAP_TOPIC_PARTITIONS": "1"}
            )
            asyncio.run(ensure_topics(settings.kafka, settings.topics))
            receivers: dict[str, list[Trial]] = {}
            for name, reading, pure in (("callmap agent, ring", "--ring", False),
                                        ("callmap agent, recv", "--no-ring", False),
                                        ("callmap agent, ring, DNS parsed in Python only",
                                         "--ring", True)):  # fmt: skip
                receivers[name] = search(
                    lambda rate, reading=reading, pure=pure: agent_trial(  # type: ignore[misc]
                        settings, broker.bootstrap, namespaces, reading, rate, pure
                    )
                )
                console.print(table_of(f"{name}, {SECONDS:.0f} s per rate", receivers[name]))
            receivers["plain recv loop"] = search(
                lambda rate: plain_trial(namespaces, f"{prefix}a", rate)
            )
            console.print(
                table_of("plain AF_PACKET recv loop, same socket", receivers["plain recv loop"])
            )
            summary = Table(title=f"highest lossless rate of DNS answers ({TRAFFIC}), same run")
            for column in ("receiver", "answers/s", "CPU % of a core", "peak RSS MB", "limit"):
                summary.add_column(column, justify="right")
            for name, trials in receivers.items():
                top = ratesearch.best(trials, lambda t: t.offered)
                lossy = [t.offered for t in trials if not t.lossless]
                limit = f"first loss at {min(lossy):,.0f}/s" if lossy else "sender"
                if top is None:
                    summary.add_row(name, "none", "", "", limit)
                else:
                    summary.add_row(
                        name, f"{top.offered:,.0f}", f"{100 * top.cpu:.0f}",
                        f"{top.rss_mb:.0f}", limit,
                    )  # fmt: skip
            console.print(summary)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
