"""The socket-table side of the capture agent: scan, decide, emit observations.

Each scan walks the proc root off the event loop thread (reading the socket
tables from /proc, or with ``--tcp-info`` through ``sock_diag`` with each
socket's tcp_info: :mod:`capture.diagscan`), the reporter decides
which connections are news (first seen, or due for a refresh), and those
become ``SocketObservation`` records handed to a sink callable, which is the
outbox in the agent and a JSON-lines printer offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from callmap.counters import StageCounters
from callmap.wire import FlowHealth, SocketObservation
from capture.connreport import DEFAULT_REFRESH_INTERVAL, ConnReport, ConnReporter
from capture.diagscan import DIAG_FAILED, DiagScan, scan_diag
from capture.inetdiag import DiagSocket
from capture.native import LOOP_IN_C
from capture.procparse import ScanResult
from capture.procscan import DEFAULT_PROC_ROOT, PodsOfPids, scan_proc
from capture.sockdiag import DiagSockets
from capture.sockroles import ROLE_CLIENT
from capture.tcphealth import SocketKey, TcpHealth, by_addresses

log = logging.getLogger(__name__)

DEFAULT_SCAN_INTERVAL = 10.0

DROP_TCP_INFO_UNREADABLE = "tcp_info_unreadable"
"""A namespace with reported client sockets that could not be dumped (its
sockets go without RTT, read from /proc instead): no CAP_SYS_ADMIN, or a
kernel error."""

# Scan counters that mean the scan could not see something it should have.
_LOSSES = ("netns_unreadable", "pid_denied", "pid_error", "table_missing")


def observations(
    reports: tuple[ConnReport, ...],
    *,
    cluster: str,
    node: str,
    health: Callable[[ConnReport], FlowHealth | None] = lambda _: None,
) -> list[SocketObservation]:
    """Wire records for the reporter's decisions, with each one's ``health``."""
    return [
        SocketObservation(
            cluster=cluster,
            node=node,
            ts=r.ts,
            netns=r.netns,
            pod_uid=r.pod_uid,
            local_ip=r.local_ip,
            local_port=r.local_port,
            remote_ip=r.remote_ip,
            remote_port=r.remote_port,
            role=r.role,
            first_seen=r.first_seen,
            health=health(r),
        )
        for r in reports
    ]


class SocketScanner:
    """Runs scans and turns them into observations; counts into ``counters``."""

    def __init__(
        self,
        *,
        cluster: str,
        node: str,
        counters: StageCounters,
        proc_root: str = DEFAULT_PROC_ROOT,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        only_netns: frozenset[int] | None = None,
        tcp_info: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``tcp_info``: give reported client sockets their RTT and retransmits
        (:mod:`capture.tcphealth`; entering namespaces takes CAP_SYS_ADMIN and
        CAP_SYS_PTRACE)."""
        self._cluster = cluster
        self._node = node
        self._counters = counters
        self._proc_root = proc_root
        self._clock = clock
        self._only_netns = only_netns
        self._diag_warned = False
        self.reporter = ConnReporter(refresh_interval)
        self.tcp_health = TcpHealth() if tcp_info else None
        self._kept = DiagSockets() if tcp_info else None
        """sock_diag sockets kept from one scan to the next."""
        self._pods = PodsOfPids()
        """The pids' pods, kept from one scan to the next."""
        if tcp_info:
            log.info("sock_diag dumps read by the %s loop", "C" if LOOP_IN_C else "Python")
        self.last_scan_seconds = 0.0
        self.last_scan_done = time.monotonic()
        """When the last scan finished (``time.monotonic``); at first, when the scanner
        was made."""

    def take(self, result: ScanResult, now: float) -> list[SocketObservation]:
        """Account for one scan's result and return what to publish (no tcp_info)."""
        return self._observations(self._decide(result, now), {})

    def _decide(self, result: ScanResult, now: float) -> tuple[ConnReport, ...]:
        """Account for one scan's result and return the reporter's decisions."""
        connections = sum(len(ns.connections) for ns in result.namespaces)
        self._counters.seen += connections
        for reason in _LOSSES:
            if result.counters.get(reason):
                self._counters.drop(reason, result.counters[reason])
        batch = self.reporter.observe(result.namespaces, now)
        self._counters.emitted += len(batch.reports)
        if batch.quiet:
            self._counters.drop("unchanged", batch.quiet)
        return batch.reports

    def _observations(
        self,
        reports: tuple[ConnReport, ...],
        dumps: Mapping[int, Mapping[SocketKey, DiagSocket]],
    ) -> list[SocketObservation]:
        tcp = self.tcp_health
        return observations(
            reports,
            cluster=self._cluster,
            node=self._node,
            health=(lambda r: None) if tcp is None else lambda r: tcp.health(r, dumps.get(r.netns)),
        )

    async def scan_once(self) -> list[SocketObservation]:
        started = time.perf_counter()
        now = self._clock()
        dumps: dict[int, dict[SocketKey, DiagSocket]] = {}
        if self.tcp_health is None:
            result = await asyncio.to_thread(
                scan_proc, self._proc_root, only_netns=self._only_netns, pods=self._pods
            )
            reports = self._decide(result, now)
        else:
            scan = await asyncio.to_thread(
                scan_diag,
                self._proc_root,
                only_netns=self._only_netns,
                kept=self._kept,
                pods=self._pods,
            )
            self._warn_diag_failed(scan)
            reports = self._decide(scan.result, now)
            dumps = self._by_addresses(scan, reports)
            self.tcp_health.forget_gone(self.reporter.first_seen)
        self.last_scan_seconds = time.perf_counter() - started
        self.last_scan_done = time.monotonic()
        return self._observations(reports, dumps)

    def _warn_diag_failed(self, scan: DiagScan) -> None:
        """Say once why sockets come without round-trip times: no namespace could be
        dumped (no CAP_SYS_ADMIN or CAP_SYS_PTRACE, most likely)."""
        failed = scan.result.counters.get(DIAG_FAILED, 0)
        if failed and not scan.sockets and not self._diag_warned:
            self._diag_warned = True
            log.warning(
                "--tcp-info: none of %d namespaces could be entered for sock_diag "
                "(it takes CAP_SYS_ADMIN and CAP_SYS_PTRACE); their sockets are read "
                "from /proc, without round-trip times",
                failed,
            )

    def _by_addresses(
        self, scan: DiagScan, reports: tuple[ConnReport, ...]
    ) -> dict[int, dict[SocketKey, DiagSocket]]:
        """The dumped sockets of the namespaces where ``reports`` has client
        sockets, by namespace id and addresses; one read from /proc instead
        (its dump failed) is counted and left out."""
        wanted = {r.netns for r in reports if r.role == ROLE_CLIENT}
        dumps: dict[int, dict[SocketKey, DiagSocket]] = {}
        for netns in wanted:
            sockets = scan.sockets.get(netns)
            if sockets is None:
                self._counters.drop(DROP_TCP_INFO_UNREADABLE)
                continue
            dumps[netns] = by_addresses(sockets)
        return dumps

    def stalled(self, interval: float) -> str | None:
        """Why scans look stuck: none finished for three intervals (at least a minute)."""
        quiet = time.monotonic() - self.last_scan_done
        if quiet <= max(3 * interval, 60.0):
            return None
        return f"no socket scan finished for {quiet:.0f}s (every {interval:g}s expected)"

    async def run(self, emit: Callable[[list[SocketObservation]], None], interval: float) -> None:
        """Scan every ``interval`` seconds until cancelled; then :meth:`close`."""
        try:
            while True:
                started = asyncio.get_running_loop().time()
                emit(await self.scan_once())
                log.debug("socket scan took %.3fs", self.last_scan_seconds)
                elapsed = asyncio.get_running_loop().time() - started
                await asyncio.sleep(max(0.0, interval - elapsed))
        finally:
            self.close()

    def close(self) -> None:
        """Close the sock_diag sockets kept between scans (they hold their
        namespaces); a later scan opens new ones."""
        if self._kept is not None:
            self._kept.close()
