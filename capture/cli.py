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
import socket
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import click

from callmap.config import load_settings
from callmap.counters import Counters
from callmap.heap import release_large_blocks, settle
from callmap.optiongroups import metrics_port_option, option_group
from callmap.signals import run_until_signalled
from callmap.wire import Record, encode
from capture.agent import AgentOptions, CaptureAgent
from capture.dnsfold import DEFAULT_MAX_WINDOW, DnsFolder
from capture.native import PARSE_IN_C
from capture.outbox import DEFAULT_MAX_AGE
from capture.privileges import parse_user
from capture.sniffer import scanned_namespace_ids
from capture.sockagent import SocketScanner


def _agent_options(
    *,
    node: str,
    interfaces: tuple[str, ...],
    netns: str | None,
    scan_netns: tuple[str, ...],
    proc_root: str,
    flush_interval: float,
    max_window_answers: int,
    scan_interval: float,
    refresh_interval: float,
    stats_interval: float,
    outbox_mib: int,
    outbox_max_age: float,
    metrics_port: int,
    drop_to: str | None,
    conntrack: bool,
    conntrack_udp: bool,
    tcp_info: bool,
    ring: bool,
) -> AgentOptions:
    """The options every capture command shares, as one :class:`AgentOptions`."""
    if drop_to and netns:
        # The agent enters --netns again to refresh its addresses, which takes
        # CAP_SYS_ADMIN; a development setup, where staying root is fine.
        raise click.UsageError("--drop-to cannot be combined with --netns")
    if drop_to and tcp_info:
        # Entering pods' namespaces for their tcp_info takes capabilities a dropped agent lacks.
        raise click.UsageError("--drop-to cannot be combined with --tcp-info")
    return AgentOptions(
        node=node,
        interfaces=interfaces,
        netns=netns,
        proc_root=proc_root,
        scan_netns=scan_netns,
        flush_interval=flush_interval,
        max_window_answers=max_window_answers,
        scan_interval=scan_interval,
        refresh_interval=refresh_interval,
        stats_interval=stats_interval,
        outbox_bytes=outbox_mib * 1024 * 1024,
        outbox_max_age=outbox_max_age,
        metrics_port=metrics_port,
        drop_to=parse_user(drop_to) if drop_to else None,
        conntrack=conntrack,
        conntrack_udp=conntrack_udp,
        tcp_info=tcp_info,
        ring=ring,
    )


_live_options = option_group(
    [
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
            "--max-window-answers",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_WINDOW,
            show_default=True,
            help="Flush a DNS window early once it holds this many distinct answers.",
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
            "--outbox-max-age",
            type=click.FloatRange(min=0),
            default=DEFAULT_MAX_AGE,
            show_default=True,
            help="Seconds a record may wait for Kafka before it is dropped (0: no bound).",
        ),
        metrics_port_option(9808),
        click.option(
            "--drop-to",
            metavar="UID[:GID]",
            envvar="CALLMAP_CAPTURE_DROP_TO",
            help="Once the packet sockets are open, become this user and group, without "
            "capabilities (as tcpdump -Z). Needs CAP_SETUID and CAP_SETGID to start.",
        ),
        click.option(
            "--conntrack/--no-conntrack",
            default=True,
            show_default=True,
            envvar="CALLMAP_CAPTURE_CONNTRACK",
            help="Follow the node's connection tracking (`capture run` only): connections "
            "too short for a scan, and the backend pod of a Service call. Needs CAP_NET_ADMIN.",
        ),
        click.option(
            "--conntrack-udp/--no-conntrack-udp",
            default=True,
            show_default=True,
            envvar="CALLMAP_CAPTURE_CONNTRACK_UDP",
            help="With --conntrack, report UDP flows too (their ports become the edges' "
            "udp_ports); flows to port 53 are DNS lookups and left out.",
        ),
        click.option(
            "--tcp-info/--no-tcp-info",
            default=False,
            show_default=True,
            envvar="CALLMAP_CAPTURE_TCP_INFO",
            help="Give reported client sockets their round-trip time and retransmits, read "
            "with sock_diag in their namespaces (edges' health rtt and retransmits). Needs "
            "CAP_SYS_ADMIN and CAP_SYS_PTRACE; not with --drop-to.",
        ),
        click.option(
            "--ring/--no-ring",
            default=True,
            show_default=True,
            envvar="CALLMAP_CAPTURE_RING",
            help="Read the packet sockets through a memory-mapped receive ring (TPACKET_V3), "
            "a block of frames at a time; --no-ring reads them one recv a frame.",
        ),
    ],
    _agent_options,
)
"""The options every capture command shares, given to it first as one AgentOptions."""


def _run_agent(options: AgentOptions) -> None:
    """Run the agent until SIGTERM or SIGINT, then let it flush what it holds."""
    release_large_blocks()
    agent = CaptureAgent(load_settings(), options)
    settle()  # set up: what exists now lives as long as the agent
    with contextlib.suppress(KeyboardInterrupt):
        run_until_signalled(agent.run())


@click.group()
def capture() -> None:
    """Node agent: DNS answers and socket tables to Kafka."""


@capture.command()
@_live_options
def run(live: AgentOptions) -> None:
    """Capture DNS answers and scan socket tables; publish both to Kafka."""
    _run_agent(replace(live, dns=True, sockets=True))


@capture.command()
@click.option(
    "--pcap",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read this pcap or pcapng file instead of capturing live.",
)
@click.option("--output", type=click.Choice(["jsonl"]), help="With --pcap: print records.")
@_live_options
def dns(live: AgentOptions, pcap: Path | None, output: str | None) -> None:
    """Capture DNS answers (live to Kafka, or from a capture file to stdout)."""
    if pcap is None:
        _run_agent(replace(live, dns=True, sockets=False, conntrack=False))
        return
    settings = load_settings()
    counters = Counters()
    folder = DnsFolder(
        cluster=settings.cluster,
        node=live.node,
        counters=counters,
        max_window=live.max_window_answers,
        native=PARSE_IN_C,
    )
    with pcap.open("rb") as handle:
        problems = _replay(handle, folder, live.flush_interval)
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
        if folder.full:  # as the live agent does, before the window's time
            _print_records(folder.flush(ts))
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
def sockets(live: AgentOptions, proc_dir: str | None, once: bool, output: str | None) -> None:
    """Scan socket tables (live to Kafka, or once to stdout)."""
    live = replace(live, proc_root=proc_dir or live.proc_root)
    if not once:
        _run_agent(replace(live, dns=False, sockets=True, conntrack=False))
        return
    settings = load_settings()
    counters = Counters()
    scanner = SocketScanner(
        cluster=settings.cluster,
        node=live.node,
        counters=counters.stage("sockets"),
        proc_root=live.proc_root,
        only_netns=scanned_namespace_ids(live.scan_netns),
        tcp_info=live.tcp_info,
    )
    try:
        _print_records(asyncio.run(scanner.scan_once()))
    finally:
        scanner.close()
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
