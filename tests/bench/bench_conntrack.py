"""Benchmark: how many new connections a second the conntrack source follows without loss.

Three network namespaces joined by veth pairs: a "node" routes between a
client and a server, and its nftables rule DNATs a service address and port
to the server, so every connection is NAT'd (and tracked) as kube-proxy's
are::

    client 10.77.1.10 <-> node <-> server 10.77.2.10:8080
    node: 10.97.0.10:80 -> 10.77.2.10:8080 (DNAT)

A load generator in C (``native/connload.c``, compiled once into the callmap
cache, keyed by the source's hash) opens connections to the service at a fixed
rate for a few seconds; the server answers each with a byte and closes; the
client counts it answered when the byte arrives and closes with SO_LINGER 0.
When the machine cannot keep the pace, the generator falls behind (the
offered rate is what it answered over the seconds it took) rather than catch
up in bursts, which would overflow any queue and measure the burst instead.
That RST keeps the client's ports out of TIME_WAIT, which would cap the rate
at the port range over 60 s (about 1,000/s); conntrack's entries go to CLOSE
(10 s) instead of TIME_WAIT (120 s), and the table holds at most one entry per
client port, so ``nf_conntrack_max`` (262,144, and not raisable in a namespace
above the host's) is never reached. The node's table is flushed before each
trial, so no entry of one trial ends in the next.

Receivers, each in a subprocess of its own in the root namespace (CPU and
peak RSS are its own), subscribed in the node namespace:

- callmap: :func:`capture.conntrack.open_conntrack` + ``FlowTracker`` +
  ``ConntrackReader``, flushed every second as the agent does;
- plain: an identically subscribed socket (``open_conntrack``: same groups,
  same 16 MiB buffer) read by a recv loop that only counts datagrams and
  ``ENOBUFS``.

A trial is lossless when no read failed with ``ENOBUFS`` (the kernel's queue
for the socket overflowed: events dropped) and, for callmap, every connection
the generator saw answered is an answered flow of the tracker (the sum of
its records' ``health.opened``: one per flow first seen answered, whatever
the folding made of them). Measure, do not target: the
offered rate doubles until the first loss (or until the generator cannot
offer more), then is bisected; the search runs three times per receiver for
the spread. CPU is the receiver's CPU time from the first connection until it had
read everything, over the seconds the generator took: the share of a core the
rate costs; ``us/event`` the same time per event read. ``lag`` is how long the
receiver still read after the last connection: more than a second means it
lived on the socket's buffer (about 26,000 events, 5,000 connections), which a
longer burst would overflow, and the summary says so ("kept up"). The
generator, the server, the kernel's forwarding and the receiver share the
machine's cores; one run of the generator with nobody subscribed shows what
the machine offers without events.

Real connections cost the machine far more than their events cost the
receiver: the generator tops out below the goal. So the same search runs a
second time on synthetic connections (``native/ctinject.c``): entries written
into the node's connection tracking over ctnetlink, each created in
SYN_SENT (NEW), made ESTABLISHED and answered 5 ms later (UPDATE) and deleted
20 ms after it began (DESTROY), with the DNAT'd tuples of a real call. The
kernel makes and sends the same events, without packets, sockets or
forwarding; a connection is answered when the kernel took both its creation
and its answer. ``--only real`` or ``--only synthetic`` runs one of the two.
Needs root, ``ip``, ``nft``, ``conntrack`` and ``gcc``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ratesearch
from rich.console import Console
from rich.table import Table

from callmap.paths import cache_dir

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # tests/
from helpers.netns import network_namespaces  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NATIVE = Path(__file__).with_name("native")
FIRST_RATE = 2_500
RISE = 2.0
BISECTIONS = 3
ROUNDS = 3
SECONDS = 5.0
GENERATOR_SHORT = 0.95
"""A trial whose generator answered less than this share of its target ends the rise."""
GOAL = 20_000
LAG_LIMIT = 1.0
CLIENT_IP, SERVER_IP, SERVICE_IP = "10.77.1.10", "10.77.2.10", "10.97.0.10"
SERVICE_PORT, SERVER_PORT = 80, 8080

RULES = f"""
table ip cmlcb {{
  chain prerouting {{
    type nat hook prerouting priority dstnat;
    ip daddr {SERVICE_IP} tcp dport {SERVICE_PORT} dnat to {SERVER_IP}:{SERVER_PORT}
  }}
}}
"""

# One receiver: "ready" once subscribed, "go" marks the CPU clock, "stop" (the
# generator is done) drains until nothing arrived for IDLE s, then one JSON line.
RECEIVER = r"""
import errno, json, logging, select, sys, time
from callmap.counters import StageCounters
from capture.conntrack import ConntrackReader, open_conntrack
from capture.ctflows import DROP_QUEUE_OVERFLOW, FlowTracker
IDLE = 0.5
logging.disable(logging.WARNING)  # each overflow is counted; the warning would say it again
mode, netns = sys.argv[1], sys.argv[2]
opened = open_conntrack(netns)
stdin = sys.stdin.buffer.raw

def command():
    return stdin.readline().decode().strip()

def callmap():
    stage = StageCounters()
    tracker = FlowTracker(cluster="bench", node="node", netns=opened.netns, counters=stage)
    reader = ConntrackReader(opened, tracker)
    reader.start()
    print("ready", flush=True)
    assert command() == "go"
    cpu, records, answered, stopped, last = time.process_time(), 0, 0, None, (-1, 0.0)
    next_flush = time.monotonic() + 1.0
    while True:  # flush every second, as the agent does; stdin says when to stop
        now = time.monotonic()
        if now >= next_flush:
            flushed = reader.flush(time.time())
            records += len(flushed)
            answered += sum(r.health.opened for r in flushed if r.health)
            next_flush += 1.0
        if stopped is None:
            if select.select([stdin], [], [], min(0.1, max(0.0, next_flush - now)))[0]:
                assert command() == "stop"
                stopped = time.monotonic()
            continue
        if stage.seen != last[0]:
            last = (stage.seen, now)
        elif now - last[1] >= IDLE:
            break
        time.sleep(0.05)
    lag = max(0.0, last[1] - stopped)
    cpu = time.process_time() - cpu
    reader.stop()
    flushed = reader.flush(time.time())
    records += len(flushed)
    answered += sum(r.health.opened for r in flushed if r.health)
    overflows = stage.dropped[DROP_QUEUE_OVERFLOW]
    return {
        "events": stage.seen - overflows, "overflows": overflows, "records": records,
        "flows": answered, "cpu": cpu, "lag": lag,
        "failure": reader.failure(), "dropped": dict(stage.dropped),
    }

def plain():
    sock = opened.sock
    sock.setblocking(False)
    buffer, datagrams, overflows = bytearray(65536), 0, 0
    print("ready", flush=True)
    assert command() == "go"
    cpu, stopped, last = time.process_time(), None, time.monotonic()
    while True:
        ready = select.select([sock, stdin], [], [], 0.1)[0]
        if sock in ready:
            while True:
                try:
                    sock.recv_into(buffer)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    overflows += 1
                    continue
                datagrams += 1
            last = time.monotonic()
        if stdin in ready:
            assert command() == "stop"
            stopped = time.monotonic()
        if stopped is not None and time.monotonic() - last >= IDLE:
            break
    lag = max(0.0, last - stopped)
    cpu = time.process_time() - cpu
    sock.close()
    return {"events": datagrams, "overflows": overflows, "flows": None, "cpu": cpu, "lag": lag}

found = callmap() if mode == "callmap" else plain()
# VmHWM, not ru_maxrss: Linux carries that over from the process that forked this one.
status = open("/proc/self/status").read().splitlines()
found["rss_kib"] = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
print(json.dumps(found), flush=True)
"""


def _sh(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def native(name: str) -> Path:
    """A load generator of ``native/``, compiled once per version of its source."""
    source = NATIVE / f"{name}.c"
    digest = hashlib.sha256(
        source.read_bytes() + (NATIVE / "loadclock.h").read_bytes()
    ).hexdigest()[:16]
    binary = cache_dir() / "bench" / f"{name}-{digest}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(f"{binary.name}.{os.getpid()}")
        _sh("gcc", "-O2", "-Wall", "-o", str(partial), str(source))
        partial.rename(binary)
    return binary


@dataclass(frozen=True, slots=True)
class Net:
    node: str
    client: str
    server: str

    def all(self) -> tuple[str, str, str]:
        return (self.node, self.client, self.server)


def make_net(net: Net) -> None:
    """The three namespaces' veths, routes, sysctls and the DNAT rule."""
    for side, ns, subnet in (("cli", net.client, "10.77.1"), ("srv", net.server, "10.77.2")):
        # Made inside the node namespace: nothing touches the host's.
        _sh("ip", "-n", net.node, "link", "add", f"to-{side}", "type", "veth",
            "peer", "name", "eth0", "netns", ns)  # fmt: skip
        _sh("ip", "-n", ns, "addr", "add", f"{subnet}.10/24", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        _sh("ip", "-n", ns, "route", "add", "default", "via", f"{subnet}.1")
        _sh("ip", "-n", net.node, "addr", "add", f"{subnet}.1/24", "dev", f"to-{side}")
        _sh("ip", "-n", net.node, "link", "set", f"to-{side}", "up")
    sysctls = (
        (net.node, "net.ipv4.ip_forward=1"),
        (net.client, "net.ipv4.ip_local_port_range=1024 65535"),
        (net.server, "net.core.somaxconn=65535"),
        (net.server, "net.ipv4.tcp_max_syn_backlog=65535"),
    )
    for ns, setting in sysctls:
        _sh("ip", "netns", "exec", ns, "sysctl", "-qw", setting)
    _sh("ip", "netns", "exec", net.node, "nft", "-f", "-", stdin=RULES)


def node_sysctl(net: Net, name: str) -> str:
    return _sh("ip", "netns", "exec", net.node, "sysctl", "-n", name).strip()


@dataclass(frozen=True, slots=True)
class Load:
    """What the generator itself counted."""

    started: int
    answered: int
    failed: int
    timed_out: int
    seconds: float
    """How long it took to start them all."""


@dataclass(frozen=True, slots=True)
class Trial:
    target: int
    load: Load
    events: int
    overflows: int
    flows: int | None
    """Answered flows the tracker saw; None for the plain loop, which does not parse."""
    cpu: float
    """Share of one core: CPU seconds until caught up over the generator's seconds."""
    rss_mb: float
    lag: float
    """Seconds the receiver was still reading after the generator was done."""
    cpu_seconds: float

    @property
    def answered_rate(self) -> float:
        return self.load.answered / self.load.seconds

    @property
    def kept_up(self) -> bool:
        """Read everything within a second of the last connection: not living on the
        socket's buffer, which would overflow in a longer burst."""
        return self.lag < LAG_LIMIT

    @property
    def us_per_event(self) -> float:
        return 1e6 * self.cpu_seconds / self.events if self.events else 0.0

    @property
    def lossless(self) -> bool:
        seen_all = self.flows is None or self.flows >= self.load.answered
        return self.overflows == 0 and seen_all


def offer(binary: Path, net: Net, rate: int) -> Load:
    """Run the generator once at ``rate``, on an empty conntrack table."""
    out = _sh("ip", "netns", "exec", net.client, str(binary), "client",
              SERVICE_IP, str(SERVICE_PORT), str(rate), str(SECONDS))  # fmt: skip
    return _load(out)


def inject(binary: Path, net: Net, rate: int) -> Load:
    """Write synthetic connections into the node's connection tracking at ``rate``."""
    out = _sh("ip", "netns", "exec", net.node, str(binary), CLIENT_IP,
              f"{SERVICE_IP}:{SERVICE_PORT}", f"{SERVER_IP}:{SERVER_PORT}",
              str(rate), str(SECONDS))  # fmt: skip
    return _load(out)


def _load(out: str) -> Load:
    found = json.loads(out)
    return Load(
        found["started"], found["answered"], found["failed"], found["timed_out"], found["seconds"]
    )


Offer = Callable[[int], Load]
"""Connections at a rate, by one generator or the other."""


def trial(offer_at: Offer, net: Net, receiver: str, rate: int) -> Trial:
    _sh("ip", "netns", "exec", net.node, "conntrack", "-F")
    child = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, receiver, net.node],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {receiver} receiver did not start")
        child.stdin.write("go\n")
        child.stdin.flush()
        load = offer_at(rate)
        child.stdin.write("stop\n")
        child.stdin.flush()
        found = json.loads(child.stdout.readline())
    finally:
        child.wait(timeout=60)
    if found.get("failure"):
        raise RuntimeError(f"the conntrack reader failed: {found['failure']}")
    return Trial(
        rate, load, found["events"], found["overflows"], found["flows"],
        found["cpu"] / load.seconds, found["rss_kib"] / 1024, found["lag"], found["cpu"],
    )  # fmt: skip


def search(one: Callable[[int], Trial]) -> list[Trial]:
    """Raise the rate until the first loss (or the generator's limit), then bisect."""
    return ratesearch.search(
        one,
        first=FIRST_RATE,
        rise=RISE,
        bisections=BISECTIONS,
        resolution=500,
        short=lambda done, rate: done.answered_rate < GENERATOR_SHORT * rate,
    )


def table_of(title: str, trials: list[Trial]) -> Table:
    table = Table(title=title)
    columns = ("target/s", "answered/s", "answered", "failed", "flows seen", "events/conn",
               "ENOBUFS", "lossless", "lag s", "CPU %", "us/event", "RSS MB")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for t in trials:
        answered = t.load.answered
        table.add_row(
            f"{t.target:,}", f"{t.answered_rate:,.0f}", f"{answered:,}",
            f"{t.load.failed + t.load.timed_out:,}",
            "-" if t.flows is None else f"{t.flows:,}",
            f"{t.events / answered:.2f}" if answered else "-",
            f"{t.overflows:,}", "yes" if t.lossless else "NO",
            f"{t.lag:.1f}" if t.kept_up else f"[bold]{t.lag:.1f}[/bold]",
            f"{100 * t.cpu:.0f}", f"{t.us_per_event:.1f}", f"{t.rss_mb:.0f}",
        )  # fmt: skip
    return table


def summary_of(results: dict[str, list[list[Trial]]], what: str) -> Table:
    table = Table(title=f"highest lossless rate of {what}/s, {ROUNDS} searches each")
    for column in ("receiver", "search", "conn/s", "CPU %", "us/event", "RSS MB",
                   "kept up", "above it", f"goal {GOAL:,}"):  # fmt: skip
        table.add_column(column, justify="right")
    for name, rounds in results.items():
        tops: list[float] = []
        for number, trials in enumerate(rounds, start=1):
            top = ratesearch.best(trials, lambda t: t.answered_rate)
            lossy = [t for t in trials if not t.lossless]
            above = "generator"
            if lossy:  # the first loss above: its offered rate and what was asked
                first = min(lossy, key=lambda t: t.target)
                above = f"loss at {first.answered_rate:,.0f} (asked {first.target:,})"
            if top is None:
                table.add_row(name, str(number), "none", "", "", "", "", above, "no")
                continue
            tops.append(top.answered_rate)
            table.add_row(
                name, str(number), f"{top.answered_rate:,.0f}", f"{100 * top.cpu:.0f}",
                f"{top.us_per_event:.1f}", f"{top.rss_mb:.0f}", "yes" if top.kept_up else "no",
                above, "yes" if top.answered_rate >= GOAL else "no",
            )  # fmt: skip
        if len(tops) > 1:
            spread = 100 * (max(tops) - min(tops)) / max(tops)
            table.add_row(name, "spread", f"{min(tops):,.0f}-{max(tops):,.0f} ({spread:.0f}%)")
    return table


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "nft", "conntrack", "gcc"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("real", "synthetic"), help="run one of the two searches")
    args = parser.parse_args()
    reason = _skip_reason()
    if reason:
        print(f"bench_conntrack: {reason}; skipped")
        return
    console = Console(width=max(Console().width, 140))
    binary, injector = native("connload"), native("ctinject")
    prefix = f"cmlcb-{uuid.uuid4().hex[:5]}"
    server: subprocess.Popen[str] | None = None
    started = time.monotonic()
    net = Net(f"{prefix}-node", f"{prefix}-cli", f"{prefix}-srv")
    with network_namespaces(*net.all()):
        try:
            make_net(net)
            server = subprocess.Popen(
                ["ip", "netns", "exec", net.server, str(binary), "server", SERVER_IP,
                 str(SERVER_PORT)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            ct_max = node_sysctl(net, "net.netfilter.nf_conntrack_max")
            close = node_sysctl(net, "net.netfilter.nf_conntrack_tcp_timeout_close")
            console.print(
                f"node namespace: nf_conntrack_max {ct_max}, CLOSE timeout {close} s;"
                f" {os.cpu_count()} CPUs; {SECONDS:.0f} s per trial"
            )
            if args.only != "synthetic":
                _sh("ip", "netns", "exec", net.node, "conntrack", "-F")
                alone = offer(binary, net, GOAL)  # nobody subscribed: the kernel makes no events
                console.print(
                    f"the generator alone, asked for {GOAL:,}/s: "
                    f"{alone.answered / alone.seconds:,.0f} answered/s, "
                    f"{alone.failed + alone.timed_out:,} failed"
                )
                _searches(console, net, lambda rate: offer(binary, net, rate), "new connections")
            if args.only != "real":
                _searches(
                    console,
                    net,
                    lambda rate: inject(injector, net, rate),
                    "synthetic connections (ctnetlink)",
                )
            console.print(f"{time.monotonic() - started:.0f} s in all")
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)


def _searches(console: Console, net: Net, offer_at: Offer, what: str) -> None:
    """Both receivers' searches, ``ROUNDS`` times, and their tables."""
    results: dict[str, list[list[Trial]]] = {"callmap": [], "plain recv loop": []}
    for _ in range(ROUNDS):
        for name, receiver in (("callmap", "callmap"), ("plain recv loop", "plain")):
            results[name].append(
                search(lambda rate, receiver=receiver: trial(offer_at, net, receiver, rate))
            )
    for name, rounds in results.items():
        for number, trials in enumerate(rounds, start=1):
            console.print(table_of(f"{what}: {name}, search {number}", trials))
    console.print(summary_of(results, what))


if __name__ == "__main__":
    main()
