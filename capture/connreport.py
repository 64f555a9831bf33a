"""Decide which of the connections seen in a scan are worth publishing.

Scans run every few seconds, but a long-lived connection is news only when it
appears and, while it lives, as a periodic "still here". :class:`ConnReporter`
is a pure state machine over scan results (no clock, no I/O) that promises:

- a connection, keyed by (netns, local ip/port, remote ip/port, role), is
  reported the first time a scan shows it;
- then again at most once per ``refresh_interval`` while consecutive scans
  keep showing it;
- a connection missing from a scan is forgotten at once (a later sighting is
  new again, with a new ``first_seen``), so memory is bounded by the
  connections alive in the last scan;
- time is whatever ``now`` the caller passes; if it goes backwards (a wall
  clock stepped back), the refresh timer restarts from it rather than staying
  silent until the clock catches up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callmap.errors import ConfigError
from capture.procscan import NamespaceScan
from capture.sockroles import Role

__all__ = [
    "DEFAULT_REFRESH_INTERVAL",
    "ConnReport",
    "ConnReporter",
    "ReportBatch",
]

DEFAULT_REFRESH_INTERVAL = 300.0
"""Seconds between two reports of the same live connection."""

_Key = tuple[int, str, int, str, int, str]


@dataclass(frozen=True, slots=True)
class ConnReport:
    """A connection to publish."""

    netns: int
    pod_uid: str | None
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    role: Role
    first_seen: float
    """``now`` of the scan that first showed this connection."""
    ts: float
    """``now`` of the scan that produced this report (``SocketObservation.ts`` on the wire)."""
    first_report: bool
    """True on the report made when the connection appeared, False on refreshes."""


@dataclass(frozen=True, slots=True)
class ReportBatch:
    """The outcome of one :meth:`ConnReporter.observe` call."""

    reports: tuple[ConnReport, ...]
    new: int
    """Connections seen for the first time (each is in ``reports``)."""
    refreshed: int
    """Known connections due for a refresh (each is in ``reports``)."""
    quiet: int
    """Known connections not due yet (deliberately not in ``reports``)."""
    forgotten: int
    """Connections known before this scan and absent from it."""
    live: int
    """Connections remembered after this scan."""


@dataclass(slots=True)
class _Seen:
    first_seen: float
    last_report: float


class ConnReporter:
    """Remembers live connections between scans; see the module docstring."""

    def __init__(self, refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
        if not refresh_interval > 0:
            raise ConfigError(f"refresh_interval must be > 0, not {refresh_interval!r}")
        self.refresh_interval = refresh_interval
        self._live: dict[_Key, _Seen] = {}

    def __len__(self) -> int:
        return len(self._live)

    def observe(self, namespaces: Iterable[NamespaceScan], now: float) -> ReportBatch:
        """Take one whole scan taken at ``now``; return what to publish."""
        previous = self._live
        current: dict[_Key, _Seen] = {}
        reports: list[ConnReport] = []
        new = refreshed = quiet = 0
        interval = self.refresh_interval
        for ns in namespaces:
            netns = ns.netns
            for c in ns.connections:
                key = (netns, c.local_ip, c.local_port, c.remote_ip, c.remote_port, c.role)
                if key in current:
                    continue  # the same socket listed twice: one connection
                seen = previous.get(key)
                if seen is None:
                    seen = _Seen(first_seen=now, last_report=now)
                    new += 1
                    first = True
                elif now - seen.last_report >= interval or now < seen.last_report:
                    seen.last_report = now
                    refreshed += 1
                    first = False
                else:
                    current[key] = seen
                    quiet += 1
                    continue
                current[key] = seen
                reports.append(
                    ConnReport(
                        netns=netns,
                        pod_uid=ns.pod_uid,
                        local_ip=c.local_ip,
                        local_port=c.local_port,
                        remote_ip=c.remote_ip,
                        remote_port=c.remote_port,
                        role=c.role,
                        first_seen=seen.first_seen,
                        ts=now,
                        first_report=first,
                    )
                )
        forgotten = sum(1 for key in previous if key not in current)
        self._live = current
        return ReportBatch(tuple(reports), new, refreshed, quiet, forgotten, len(current))
