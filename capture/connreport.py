"""Decide which of the connections seen in a scan are worth publishing.

Scans run every few seconds, but a long-lived connection is news only when it
appears and, while it lives, as a periodic "still here". :class:`ConnReporter`
is a pure state machine over scan results (no clock, no I/O) that promises:

- a connection, keyed by (netns, local ip/port, remote ip/port), is
  reported the first time a scan shows it;
- its role is decided then and kept for its life: a server that closes its
  listening socket (a rolling restart, a graceful shutdown) leaves its
  accepted connections draining on a port nobody listens on, and they stay
  the server side; a connection first seen after its listener closed is the
  server side too when its local port listened in its namespace within
  ``listener_memory`` seconds (a client whose ephemeral port happens to be
  such a port within that time would be taken for a server);
- then again at most once per ``refresh_interval`` while consecutive scans
  keep showing it;
- a connection missing from a scan is forgotten at once (a later sighting is
  new again, with a new ``first_seen``), so memory is bounded by the
  connections alive in the last scan, plus the listeners of the last
  ``listener_memory`` seconds;
- time is whatever ``now`` the caller passes; if it goes backwards (a wall
  clock stepped back), the refresh timer restarts from it rather than staying
  silent until the clock catches up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callmap.errors import ConfigError
from capture.procparse import NamespaceScan
from capture.sockroles import ROLE_CLIENT, ROLE_SERVER, Role

__all__ = [
    "DEFAULT_REFRESH_INTERVAL",
    "ConnReport",
    "ConnReporter",
    "ReportBatch",
]

DEFAULT_REFRESH_INTERVAL = 300.0
"""Seconds between two reports of the same live connection."""
DEFAULT_LISTENER_MEMORY = 600.0
"""Seconds a closed listener still makes its port's new connections the server side."""

_Key = tuple[int, str, int, str, int]
_V4_WILDCARD, _V6_WILDCARD = "0.0.0.0", "::"


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
    role: Role


class ConnReporter:
    """Remembers live connections between scans; see the module docstring."""

    def __init__(
        self,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        listener_memory: float = DEFAULT_LISTENER_MEMORY,
    ) -> None:
        if not refresh_interval > 0:
            raise ConfigError(f"refresh_interval must be > 0, not {refresh_interval!r}")
        self.refresh_interval = refresh_interval
        self.listener_memory = listener_memory
        self._live: dict[_Key, _Seen] = {}
        self._listened: dict[tuple[int, str, int], float] = {}
        """(netns, ip, port) of every listener seen lately, and when it was last seen."""

    def __len__(self) -> int:
        return len(self._live)

    def observe(self, namespaces: Iterable[NamespaceScan], now: float) -> ReportBatch:
        """Take one whole scan taken at ``now``; return what to publish."""
        previous = self._live
        current: dict[_Key, _Seen] = {}
        reports: list[ConnReport] = []
        new = refreshed = quiet = 0
        interval = self.refresh_interval
        scans = namespaces if isinstance(namespaces, (list, tuple)) else list(namespaces)
        self._remember_listeners(scans, now)
        for ns in scans:
            netns = ns.netns
            for c in ns.connections:
                key = (netns, c.local_ip, c.local_port, c.remote_ip, c.remote_port)
                if key in current:
                    continue  # the same socket listed twice: one connection
                seen = previous.get(key)
                if seen is None:
                    role = c.role
                    if role == ROLE_CLIENT and self._listened_lately(
                        netns, c.local_ip, c.local_port
                    ):
                        role = ROLE_SERVER  # accepted by a listener that has closed since
                    seen = _Seen(first_seen=now, last_report=now, role=role)
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
                        role=seen.role,
                        first_seen=seen.first_seen,
                        ts=now,
                        first_report=first,
                    )
                )
        forgotten = sum(1 for key in previous if key not in current)
        self._live = current
        return ReportBatch(tuple(reports), new, refreshed, quiet, forgotten, len(current))

    def first_seen(self, key: _Key) -> float | None:
        """When the live connection ``key`` (netns, local ip/port, remote ip/port) was
        first seen; None when the last scan did not show it."""
        seen = self._live.get(key)
        return None if seen is None else seen.first_seen

    def _remember_listeners(self, scans: Iterable[NamespaceScan], now: float) -> None:
        listened = self._listened
        for ns in scans:
            for ip, port in ns.listeners:
                listened[(ns.netns, ip, port)] = now
        horizon = now - self.listener_memory
        if any(t < horizon or t > now for t in listened.values()):
            self._listened = {k: t for k, t in listened.items() if horizon <= t <= now}

    def _listened_lately(self, netns: int, ip: str, port: int) -> bool:
        """Whether ``ip:port`` (or a wildcard covering it) listened in ``netns`` lately."""
        listened = self._listened
        return (
            (netns, ip, port) in listened
            or (netns, _V6_WILDCARD, port) in listened
            or (":" not in ip and (netns, _V4_WILDCARD, port) in listened)
        )
