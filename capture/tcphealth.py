"""How a reported client socket is doing, from its ``tcp_info``. Pure.

With ``--tcp-info`` the socket scanner dumps, through netlink ``sock_diag``
(:mod:`capture.sockdiag`), the namespaces where a scan reported client
connections, and :class:`TcpHealth` turns each reported client socket's
``tcp_info`` into the health its observation carries:

- ``rtt``: one sample, the socket's smoothed RTT (``tcpi_rtt``) now;
- ``retransmits``: segments it retransmitted (``tcpi_total_retrans``) since
  its previous report; all of them at its first report.

Only the client side reports: the server's socket of the same connection
would count its RTT twice. A socket the dump did not find (closed between
the scan and the dump, a namespace that could not be entered) reports no
health. A connection is known by its addresses and the ``first_seen`` of the
scan that found it, so a new connection on the same ports starts from zero;
a connection the reporter forgot (gone from the last scan) is forgotten too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from callmap.wire import FlowHealth, RttSamples
from capture.connreport import ConnReport
from capture.inetdiag import DiagSocket
from capture.sockroles import ROLE_CLIENT

__all__ = ["ConnKey", "SocketKey", "TcpHealth", "by_addresses"]

SocketKey = tuple[str, int, str, int]
"""(local ip, local port, remote ip, remote port) of a socket in its namespace."""

ConnKey = tuple[int, str, int, str, int]
"""(netns, local ip/port, remote ip/port): a connection as the reporter knows it."""


def by_addresses(sockets: Iterable[DiagSocket]) -> dict[SocketKey, DiagSocket]:
    """The dumped sockets of one namespace by their addresses."""
    return {(s.local_ip, s.local_port, s.remote_ip, s.remote_port): s for s in sockets}


class TcpHealth:
    """Each reported client connection's retransmits so far; see the module docstring."""

    def __init__(self) -> None:
        self._told: dict[ConnKey, tuple[float, int]] = {}
        """Per connection: its ``first_seen``, and the retransmits its last report counted."""

    def __len__(self) -> int:
        return len(self._told)

    def health(
        self, report: ConnReport, sockets: Mapping[SocketKey, DiagSocket] | None
    ) -> FlowHealth | None:
        """The health of ``report``, given its namespace's dumped ``sockets``
        (None: not dumped); None when there is none to tell."""
        if report.role != ROLE_CLIENT or sockets is None:
            return None
        found = sockets.get(
            (report.local_ip, report.local_port, report.remote_ip, report.remote_port)
        )
        if found is None or found.rtt_us is None:
            return None
        key = (
            report.netns,
            report.local_ip,
            report.local_port,
            report.remote_ip,
            report.remote_port,
        )
        total = found.total_retrans or 0
        first_seen, before = self._told.get(key, (report.first_seen, 0))
        if first_seen != report.first_seen:  # a new connection on the same addresses
            before = 0
        self._told[key] = (report.first_seen, total)
        return FlowHealth(retransmits=max(0, total - before), rtt=RttSamples.of(found.rtt_us))

    def forget_gone(self, first_seen: Callable[[ConnKey], float | None]) -> None:
        """Forget the connections that ``first_seen`` (the reporter's) no longer knows
        as the same connection."""
        told = self._told
        gone = [key for key, (first, _) in told.items() if first_seen(key) != first]
        for key in gone:
            del told[key]
