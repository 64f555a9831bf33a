"""``callmap capture``: the node agent, live or offline.

- ``callmap capture run``: DNS capture and socket scans, published to Kafka
  (what the DaemonSet runs).
- ``callmap capture dns``: DNS capture alone; with ``--pcap FILE --output
  jsonl`` it reads a tcpdump capture and prints one DnsAnswer per line.
- ``callmap capture sockets``: socket scans alone; with ``--proc DIR --once
  --output jsonl`` it prints one SocketObservation per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import click

from callmap.config import load_settings
from callmap.counters import Counters
from callmap.wire import Record, encode
from capture.agent import AgentOptions, CaptureAgent
from capture.dnsfold import DnsFolder
from capture.sniffer import netns_inodes
from capture.sockagent import SocketScanner

FuncT = Callable[..., Any]


def _live_options(function: FuncT) -> FuncT:
    decorators = [
        click.option(
            "--node",
            envvar="CALLMAP_NODE",
            default=socket.gethostname,
            show_default="host name",
            help="This node's name (env CALLMAP_NODE).",
        ),
        click.option(
            "--interface",
            "interfaces",
            multiple=True,
            help="Capture on this interface (repeat); default: all.",
        ),
        click.option("--netns", help="Open capture sockets in this network namespace."),
        click.option(
            "--scan-netns",
            "scan_netns",
            multiple=True,
            help="Scan only this network namespace (repeat); default: all.",
        ),
        click.option(
            "--proc-root",
            default="/proc",
            show_default=True,
            envvar="CALLMAP_PROC_ROOT",
            help="Where the host's /proc is mounted.",
        ),
        click.option(
            "--flush-interval", default=1.0, show_default=True, help="Seconds per DNS flush window."
        ),
        click.option(
            "--scan-interval", default=10.0, show_default=True, help="Seconds between socket scans."
        ),
        click.option(
            "--refresh-interval",
            default=300.0,
            show_default=True,
            help="Seconds between reports of the same live connection.",
        ),
        click.option(
            "--stats-interval",
            default=10.0,
            show_default=True,
            help="Seconds between CaptureStats records.",
        ),
        click.option(
            "--outbox-mib",
            default=64,
            show_default=True,
            help="MiB kept while Kafka is unreachable; the oldest go first.",
        ),
        click.option(
            "--metrics-port",
            default=9808,
            show_default=True,
            envvar="CALLMAP_METRICS_PORT",
            help="Prometheus port; 0 turns it off.",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def _run_agent(dns: bool, sockets: bool, **options: Any) -> None:
    settings = load_settings()
    agent_options = AgentOptions(
        node=options["node"],
        dns=dns,
        sockets=sockets,
        interfaces=tuple(options["interfaces"]),
        netns=options["netns"],
        proc_root=options["proc_root"],
        scan_netns=tuple(options["scan_netns"]),
        flush_interval=options["flush_interval"],
        scan_interval=options["scan_interval"],
        refresh_interval=options["refresh_interval"],
        stats_interval=options["stats_interval"],
        outbox_bytes=options["outbox_mib"] * 1024 * 1024,
        metrics_port=options["metrics_port"],
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_until_signalled(CaptureAgent(settings, agent_options)))


async def _until_signalled(agent: CaptureAgent) -> None:
    """Run the agent until SIGTERM or SIGINT, then let it flush what it holds."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await agent.run()


@click.group()
def capture() -> None:
    """Node agent: DNS answers and socket tables to Kafka."""


@capture.command()
@_live_options
def run(**options: Any) -> None:
    """Capture DNS answers and scan socket tables; publish both to Kafka."""
    _run_agent(dns=True, sockets=True, **options)


@capture.command()
@click.option(
    "--pcap",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read this pcap or pcapng file instead of capturing live.",
)
@click.option("--output", type=click.Choice(["jsonl"]), help="With --pcap: print records.")
@_live_options
def dns(pcap: Path | None, output: str | None, **options: Any) -> None:
    """Capture DNS answers (live to Kafka, or from a capture file to stdout)."""
    if pcap is None:
        _run_agent(dns=True, sockets=False, **options)
        return
    settings = load_settings()
    counters = Counters()
    folder = DnsFolder(cluster=settings.cluster, node=options["node"], counters=counters)
    with pcap.open("rb") as handle:
        problems = _replay(handle, folder, options["flush_interval"])
    _summarise(counters, problems)


def _replay(handle: BinaryIO, folder: DnsFolder, window: float) -> list[str]:
    """Feed a capture file through the folder, flushing by capture time."""
    from capture.pcapfile import PcapReader

    reader = PcapReader(handle)
    window_end: float | None = None
    last = 0.0
    for ts, linktype, frame in reader:
        if math.isnan(ts):  # pcapng simple packet blocks carry no time
            ts = last
        last = ts
        if window_end is None:
            window_end = ts + window
        elif ts >= window_end:
            _print_records(folder.flush(ts))
            window_end = ts + window
        folder.add_frame(frame, ts, linktype)
    _print_records(folder.flush(window_end or 0.0))
    problems = [f"{reason}: {count}" for reason, count in sorted(reader.problems.items())]
    if reader.error is not None:
        problems.append(f"stopped reading: {reader.error}")
    return problems


@capture.command()
@click.option(
    "--proc",
    "proc_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Read this proc tree (default: --proc-root).",
)
@click.option("--once", is_flag=True, help="Scan once, print the records, exit.")
@click.option("--output", type=click.Choice(["jsonl"]), help="With --once: print records.")
@_live_options
def sockets(proc_dir: str | None, once: bool, output: str | None, **options: Any) -> None:
    """Scan socket tables (live to Kafka, or once to stdout)."""
    if not once:
        if proc_dir:
            options["proc_root"] = proc_dir
        _run_agent(dns=False, sockets=True, **options)
        return
    settings = load_settings()
    counters = Counters()
    scanner = SocketScanner(
        cluster=settings.cluster,
        node=options["node"],
        counters=counters.stage("sockets"),
        proc_root=proc_dir or options["proc_root"],
        only_netns=netns_inodes(options["scan_netns"]),
    )
    _print_records(asyncio.run(scanner.scan_once()))
    _summarise(counters, [])


def _print_records(records: Iterable[Record]) -> None:
    out = sys.stdout.buffer
    for record in records:
        out.write(encode(record) + b"\n")
    out.flush()


def _summarise(counters: Counters, problems: list[str]) -> None:
    """Counters to stderr, so stdout stays pure JSON lines."""
    for stage, totals in sorted(counters.totals().items()):
        dropped = ", ".join(f"{r}={n}" for r, n in sorted(totals.dropped.items())) or "none"
        click.echo(
            f"{stage}: seen={totals.seen} emitted={totals.emitted} dropped: {dropped}", err=True
        )
    for problem in problems:
        click.echo(f"capture file: {problem}", err=True)
