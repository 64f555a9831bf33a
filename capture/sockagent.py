"""The socket-table side of the capture agent: scan, decide, emit observations.

Each scan walks the proc root off the event loop thread, the reporter decides
which connections are news (first seen, or due for a refresh), and those
become ``SocketObservation`` records handed to a sink callable, which is the
outbox in the agent and a JSON-lines printer offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from callmap.counters import StageCounters
from callmap.wire import SocketObservation
from capture.connreport import DEFAULT_REFRESH_INTERVAL, ConnReport, ConnReporter
from capture.procparse import ScanResult
from capture.procscan import DEFAULT_PROC_ROOT, scan_proc

log = logging.getLogger(__name__)

DEFAULT_SCAN_INTERVAL = 10.0

# Scan counters that mean the scan could not see something it should have.
_LOSSES = ("netns_unreadable", "pid_denied", "pid_error", "table_missing")


def observations(
    reports: tuple[ConnReport, ...], *, cluster: str, node: str
) -> list[SocketObservation]:
    """Wire records for the reporter's decisions."""
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cluster = cluster
        self._node = node
        self._counters = counters
        self._proc_root = proc_root
        self._clock = clock
        self._only_netns = only_netns
        self.reporter = ConnReporter(refresh_interval)
        self.last_scan_seconds = 0.0
        self.last_scan_done = time.monotonic()
        """When the last scan finished (``time.monotonic``); at first, when the scanner
        was made."""

    def take(self, result: ScanResult, now: float) -> list[SocketObservation]:
        """Account for one scan's result and return what to publish."""
        connections = sum(len(ns.connections) for ns in result.namespaces)
        self._counters.seen += connections
        for reason in _LOSSES:
            if result.counters.get(reason):
                self._counters.drop(reason, result.counters[reason])
        batch = self.reporter.observe(result.namespaces, now)
        self._counters.emitted += len(batch.reports)
        if batch.quiet:
            self._counters.drop("unchanged", batch.quiet)
        return observations(batch.reports, cluster=self._cluster, node=self._node)

    async def scan_once(self) -> list[SocketObservation]:
        started = time.perf_counter()
        now = self._clock()
        result = await asyncio.to_thread(scan_proc, self._proc_root, only_netns=self._only_netns)
        self.last_scan_seconds = time.perf_counter() - started
        self.last_scan_done = time.monotonic()
        return self.take(result, now)

    def stalled(self, interval: float) -> str | None:
        """Why scans look stuck: none finished for three intervals (at least a minute)."""
        quiet = time.monotonic() - self.last_scan_done
        if quiet <= max(3 * interval, 60.0):
            return None
        return f"no socket scan finished for {quiet:.0f}s (every {interval:g}s expected)"

    async def run(self, emit: Callable[[list[SocketObservation]], None], interval: float) -> None:
        """Scan every ``interval`` seconds until cancelled."""
        while True:
            started = asyncio.get_running_loop().time()
            emit(await self.scan_once())
            log.debug("socket scan took %.3fs", self.last_scan_seconds)
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, interval - elapsed))
