"""The capture agent's runtime: its tasks, the outbox, stats and metrics.

One :class:`CaptureAgent` per node runs, as named and supervised asyncio
tasks: DNS capture flushes (one batch message per window), socket scans, the
connections the node's connection tracking saw answered (one batch per
window, beside the scans' observations, whose NAT'd remotes it names), the
publisher that drains the outbox into Kafka, and the stats task that publishes
a ``CaptureStats`` record every interval. Records become per-node batch
messages (``encode_batches``), keyed by node. Capture never waits for Kafka:
messages queue in the bounded outbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from callmap.config import Settings
from callmap.counters import Counters
from callmap.errors import ConfigError
from callmap.lists import drained
from callmap.metrics import CountersCollector, serve_metrics
from callmap.readiness import CAPTURE_RUNNING
from callmap.wire import (
    DNS,
    SOCKETS,
    STATS,
    CaptureStats,
    DnsAnswerBatch,
    SocketBatch,
    SocketObservation,
    encode,
    encode_batches,
)
from capture.dnsfold import DEFAULT_MAX_WINDOW, DnsFolder, FoldedAnswer
from capture.localaddrs import read_local_addresses
from capture.native import PARSE_IN_C
from capture.outbox import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, Outbox, Outgoing
from capture.privileges import drop_to
from capture.publisher import Publisher
from capture.readerthread import share_interpreter
from capture.sniffer import Sniffer, open_sockets, scanned_namespace_ids
from capture.sockagent import DEFAULT_SCAN_INTERVAL, SocketScanner

if TYPE_CHECKING:
    from capture.conntrack import ConntrackReader

log = logging.getLogger(__name__)

PUBLISH = "publish"
WINDOW_FULL = "dns_window_full"
"""The event counted for each DNS window flushed early because it was full."""
LOCAL_ADDRESSES_INTERVAL = 30.0
"""Seconds between readings of the capture namespace's addresses (a node gains some)."""


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """What the agent captures and how often."""

    node: str
    """This node's name, stamped on every record and used as message key."""
    dns: bool = True
    """Capture DNS answers."""
    sockets: bool = True
    """Scan socket tables."""
    conntrack: bool = False
    """Follow the connection tracking of the capture namespace (needs CAP_NET_ADMIN);
    without the capability the agent runs on without it, and says so."""
    conntrack_udp: bool = True
    """Follow UDP flows too (DNS lookups left out), as calls with ``transport: udp``."""
    tcp_info: bool = False
    """Give reported client sockets their RTT and retransmits from ``tcp_info``
    (:mod:`capture.tcphealth`); needs CAP_SYS_ADMIN and CAP_SYS_PTRACE, so no ``drop_to``."""
    ring: bool = True
    """Read the packet sockets through a receive ring (:class:`capture.sniffer.RxRing`)."""
    interfaces: Sequence[str] = field(default_factory=tuple)
    """Interfaces to capture on; empty means all of them."""
    netns: str | None = None
    """Open capture sockets in this network namespace (a name or a path)."""
    proc_root: str = "/proc"
    """Where to read processes and socket tables (``/host/proc`` in the chart)."""
    scan_netns: Sequence[str] = field(default_factory=tuple)
    """Scan only these network namespaces (names or paths); empty means all."""
    flush_interval: float = 1.0
    """Seconds per DNS flush window."""
    max_window_answers: int = DEFAULT_MAX_WINDOW
    """Distinct answers after which a DNS window is flushed before its time."""
    scan_interval: float = DEFAULT_SCAN_INTERVAL
    """Seconds between socket scans."""
    refresh_interval: float = 300.0
    """Seconds between two reports of the same live connection."""
    stats_interval: float = 10.0
    """Seconds between CaptureStats records."""
    outbox_bytes: int = DEFAULT_MAX_BYTES
    """Bytes of messages kept while Kafka is unreachable; the oldest go first."""
    outbox_max_age: float = DEFAULT_MAX_AGE
    """Seconds a message may wait for Kafka before it is dropped (0: no bound)."""
    metrics_port: int = 9808
    """Port of the Prometheus endpoint; 0 turns it off."""
    drop_to: tuple[int, int] | None = None
    """Become this user and group once the packet sockets are open
    (:mod:`capture.privileges`); None: stay as started."""


class CaptureAgent:
    """Runs capture for one node until cancelled."""

    def __init__(
        self,
        settings: Settings,
        options: AgentOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.options = options
        self.counters = Counters()
        self._clock = clock
        self.outbox = Outbox(options.outbox_bytes, options.outbox_max_age)
        self.publisher = Publisher(
            settings.kafka, self.outbox, self.counters.stage(PUBLISH), clock=clock
        )
        self.boot_id = uuid.uuid4().hex
        """This process's id on its CaptureStats: a new one means the counters began again."""
        self._stats_seq = 0
        self.folder = DnsFolder(
            cluster=settings.cluster,
            node=options.node,
            counters=self.counters,
            max_window=options.max_window_answers,
            native=PARSE_IN_C,
        )
        self.sniffer: Sniffer | None = None
        """The DNS capture thread, once :meth:`run` opened it."""
        self.conntrack: ConntrackReader | None = None
        """The connection-tracking thread, once :meth:`run` opened it."""
        self.conntrack_counts_bytes = False
        """The node's conntrack counted bytes (``nf_conntrack_acct``) when it was opened."""
        self.scanner = SocketScanner(
            cluster=settings.cluster,
            node=options.node,
            counters=self.counters.stage("sockets"),
            proc_root=options.proc_root,
            refresh_interval=options.refresh_interval,
            only_netns=scanned_namespace_ids(options.scan_netns),
            tcp_info=options.tcp_info,
            clock=clock,
        )
        self._key = options.node.encode()

    def collector(self) -> CountersCollector:
        return CountersCollector(
            "capture",
            self.counters,
            gauges={
                "outbox_bytes": ("Bytes waiting for Kafka.", lambda: float(self.outbox.bytes)),
                "outbox_dropped_records": (
                    "Records the outbox dropped (full, or past its age bound).",
                    lambda: float(self.outbox.dropped_records.total()),
                ),
                "kafka_connected": (
                    "1 while the last send to Kafka succeeded.",
                    lambda: float(self.publisher.connected),
                ),
                "socket_scan_seconds": (
                    "Duration of the last socket scan.",
                    lambda: self.scanner.last_scan_seconds,
                ),
                "ring_sockets": (
                    "Packet sockets read through a receive ring (the rest: a recv a frame).",
                    lambda: float(self.sniffer.ringed() if self.sniffer is not None else 0),
                ),
                "conntrack_following": (
                    "1 while the node's connection tracking is followed.",
                    lambda: float(self.conntrack is not None and self.conntrack.failure() is None),
                ),
                "conntrack_counts_bytes": (
                    "1 if the node's connection tracking counted bytes when the agent started"
                    " (nf_conntrack_acct): only then do edges' health have bytes.",
                    lambda: float(self.conntrack_counts_bytes),
                ),
            },
        )

    def publish_dns(self, answers: list[FoldedAnswer]) -> None:
        self._submit(DNS.name, DnsAnswerBatch, answers)

    def publish_sockets(self, records: list[SocketObservation]) -> None:
        self._submit(SOCKETS.name, SocketBatch, records)

    def publish_scanned(self, records: list[SocketObservation]) -> None:
        """A scan's observations, with the backends of NAT'd connections named."""
        if self.conntrack is not None:
            records = self.conntrack.rewrite(records)
        self.publish_sockets(records)

    def _submit(
        self,
        topic: str,
        batch_type: type[DnsAnswerBatch] | type[SocketBatch],
        records: list[FoldedAnswer] | list[SocketObservation],
    ) -> None:
        """Queue ``records`` (each a wire record, or encoding as one) as batch messages;
        takes the list, and empties it."""
        cluster, node = self.settings.cluster, self.options.node
        taken = encode_batches(
            batch_type, cluster=cluster, node=node, records=drained(cast("list[Any]", records))
        )
        for message in taken:
            self.publisher.submit(Outgoing(topic, self._key, message.value, message.records))

    def stats_record(self) -> CaptureStats:
        self._stats_seq += 1
        return CaptureStats(
            cluster=self.settings.cluster,
            node=self.options.node,
            ts=self._clock(),
            interval=self.options.stats_interval,
            stages=self.counters.interval(),
            boot_id=self.boot_id,
            seq=self._stats_seq,
            totals=self.counters.running(),
        )

    async def run(self) -> None:
        """Start every task; return only when cancelled (or raise when one fails)."""
        options = self.options
        sniffer = None
        if options.dns:  # first: a capture that cannot start fails before anything else runs
            loop = asyncio.get_running_loop()
            sniffer = self.sniffer = Sniffer(
                open_sockets(options.interfaces, options.netns),
                self.folder,
                ring=options.ring,
                on_full=lambda: loop.call_soon_threadsafe(self._flush_full_window),
            )
            log.info("DNS responses read by the %s parser", "C" if PARSE_IN_C else "Python")
            if sniffer.ringed():
                share_interpreter()  # a ring's reader lets go of it only when forced to
        if options.conntrack:  # before privileges go: subscribing needs CAP_NET_ADMIN
            self.conntrack = self._open_conntrack()
        if options.drop_to is not None:
            drop_to(*options.drop_to)
            log.info("running as user %d, group %d, without capabilities", *options.drop_to)
        serve_metrics(options.metrics_port, self.collector(), health=self.health)
        tasks: dict[str, Coroutine[Any, Any, None]] = {
            "publisher": self.publisher.run(),
            "stats": self._every(options.stats_interval, self._publish_stats),
        }
        if sniffer is not None:
            self.folder.local_addresses = read_local_addresses(options.netns)
            tasks["local-addresses"] = self._refresh_local_addresses(LOCAL_ADDRESSES_INTERVAL)
            sniffer.start()
            flush = sniffer.flush
            tasks["dns"] = self._every(
                options.flush_interval, lambda: self.publish_dns(flush(self._clock()))
            )
        if options.sockets:
            tasks["sockets"] = self.scanner.run(self.publish_scanned, options.scan_interval)
        if (conntrack := self.conntrack) is not None:
            conntrack.start()
            tasks["conntrack"] = self._every(
                options.flush_interval,
                lambda: self.publish_sockets(conntrack.flush(self._clock())),
            )
        log.info("%s %s: %s", CAPTURE_RUNNING, options.node, ", ".join(tasks))
        try:
            async with asyncio.TaskGroup() as group:
                for name, coroutine in tasks.items():
                    group.create_task(coroutine, name=f"capture-{name}")
        finally:
            if sniffer is not None:
                sniffer.stop()
                self.publish_dns(self.folder.close_window(self._clock()).answers())
            if self.conntrack is not None:
                self.conntrack.stop()
                self.publish_sockets(self.conntrack.flush(self._clock()))
            self._publish_stats()  # the last counts, drops included, before leaving
            await self._drain_remaining()

    def _flush_full_window(self) -> None:
        """Publish a DNS window that filled before its time (the capture thread asked)."""
        if self.sniffer is not None:
            self.counters.events[WINDOW_FULL] += 1
            self.publish_dns(self.sniffer.flush(self._clock()))

    def health(self) -> list[str]:
        """What keeps this agent from capturing (the liveness probe fails on any)."""
        problems = []
        if self.sniffer is not None and (failure := self.sniffer.failure()) is not None:
            problems.append(f"DNS capture stopped: {failure}")
        if self.options.sockets and (stall := self.scanner.stalled(self.options.scan_interval)):
            problems.append(stall)
        if self.conntrack is not None and (failure := self.conntrack.failure()) is not None:
            problems.append(f"connection tracking stopped: {failure}")
        return problems

    def _open_conntrack(self) -> ConntrackReader | None:
        """The connection-tracking reader; None, said once, where it cannot subscribe."""
        # Here, not at the top: pyroute2 takes 0.1 s to import, which `capture dns` and
        # `--no-conntrack` need not pay.
        from capture.conntrack import ConntrackReader, counts_bytes, open_conntrack
        from capture.ctflows import STAGE, FlowTracker

        try:
            source = open_conntrack(self.options.netns)
        except ConfigError as exc:
            log.warning(
                "not following connection tracking (%s): calls shorter than a socket scan "
                "are missed, and a Service call names every workload behind it",
                exc,
            )
            return None
        self.conntrack_counts_bytes = counts_bytes(self.options.netns) is True
        if not self.conntrack_counts_bytes:
            log.info(
                "the node's connection tracking counts no bytes (sysctl "
                "net.netfilter.nf_conntrack_acct=0): edges' health will have none"
            )
        tracker = FlowTracker(
            cluster=self.settings.cluster,
            node=self.options.node,
            netns=source.netns,
            counters=self.counters.stage(STAGE),
            udp=self.options.conntrack_udp,
        )
        return ConntrackReader(source, tracker, clock=self._clock)

    async def _refresh_local_addresses(self, seconds: float) -> None:
        """The capture namespace's addresses, for the folder's DNS-server rule."""
        while True:
            await asyncio.sleep(seconds)
            addresses = await asyncio.to_thread(read_local_addresses, self.options.netns)
            self.folder.local_addresses = addresses

    def _publish_stats(self) -> None:
        stats = self.stats_record()
        self.publisher.submit_stats(Outgoing(STATS.name, self._key, encode(stats), 1))

    async def _every(self, seconds: float, action: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += seconds
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            action()

    async def _drain_remaining(self, timeout: float = 5.0) -> None:
        """On shutdown, give what is queued a few seconds to reach Kafka."""
        sender = asyncio.create_task(self.publisher.run(), name="capture-final-drain")
        try:
            if not await self.publisher.drain(timeout):
                log.warning("shutting down with %d messages unsent", len(self.outbox))
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
