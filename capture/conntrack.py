"""Live conntrack events: a NETLINK_NETFILTER socket, read off the loop into a tracker.

:func:`open_conntrack` subscribes a netlink socket to the kernel's connection
tracking events (groups NEW, UPDATE and DESTROY) of one network namespace:
the agent's own, or a named one (a lab node), entered by a thread of its own
as :func:`capture.sniffer.in_netns` does, so the rest of the process stays
where it is. Subscribing needs ``CAP_NET_ADMIN``; the socket keeps receiving
after the agent gives up its privileges (``--drop-to``), so opening and
reading are separate steps.

A :class:`ConntrackReader` reads the socket on one named thread, never on the
event loop, and hands each datagram to a :class:`~capture.ctflows.FlowTracker`
under a lock that :meth:`~ConntrackReader.flush` and
:meth:`~ConntrackReader.rewrite` share. When the kernel's queue for the socket
overflows, the kernel drops events and the next read fails with ``ENOBUFS``:
that is counted (``conntrack`` stage, ``event_queue_overflow``) and logged,
and reading goes on.

Connection tracking only runs in a namespace where something uses it (NAT or
a ``ct`` rule, as kube-proxy's are); in a namespace without, the socket
opens fine and stays silent.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyroute2.netlink import NETLINK_NETFILTER
from pyroute2.netlink.nfnetlink import (
    NFNLGRP_CONNTRACK_DESTROY,
    NFNLGRP_CONNTRACK_NEW,
    NFNLGRP_CONNTRACK_UPDATE,
)

from callmap.errors import ConfigError
from callmap.logthrottle import LogThrottle
from callmap.wire import SocketObservation
from capture.ctflows import DROP_QUEUE_OVERFLOW, FlowTracker
from capture.procscan import namespace_id
from capture.readerthread import DEFAULT_RCVBUF, ReaderThread, set_receive_buffer
from capture.sniffer import in_netns

log = logging.getLogger(__name__)

GROUPS = sum(
    1 << (group - 1)
    for group in (NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY)
)
"""The multicast groups to bind to, as the bitmask ``bind`` takes."""
_READ_SIZE = 64 * 1024
_WARN_EVERY = 60.0  # seconds between two overflow warnings; every overflow is counted


@dataclass(frozen=True, slots=True)
class ConntrackSocket:
    """A subscribed socket and the namespace whose connection tracking it hears."""

    sock: socket.socket
    netns: int
    """The namespace's id as the socket scan gives it (the inode of its ``net/tcp``)."""


def open_conntrack(netns: str | None = None, rcvbuf: int = DEFAULT_RCVBUF) -> ConntrackSocket:
    """A socket subscribed to the conntrack events of ``netns`` (a name under
    /var/run/netns or a path), or of this process's namespace when None."""
    if netns is None:
        return _open(rcvbuf)
    try:
        return in_netns(netns, lambda: _open(rcvbuf))
    except FileNotFoundError as exc:
        raise ConfigError(f"no network namespace {exc.filename}") from None


ACCOUNTING = "/proc/sys/net/netfilter/nf_conntrack_acct"
"""Whether conntrack counts each flow's bytes (and so puts them in DESTROY events)."""


def counts_bytes(netns: str | None = None) -> bool | None:
    """Whether the connection tracking of ``netns`` (this process's when None) counts
    bytes; None when that cannot be read (no conntrack there, or no such file)."""

    def read() -> bool | None:
        try:
            with open(ACCOUNTING, encoding="ascii") as setting:
                return setting.read().strip() != "0"
        except (OSError, UnicodeDecodeError):
            return None

    try:
        return read() if netns is None else in_netns(netns, read)
    except OSError:
        return None


def _open(rcvbuf: int) -> ConntrackSocket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as exc:
        raise ConfigError(f"cannot open a netfilter netlink socket: {exc}") from None
    try:
        set_receive_buffer(sock, rcvbuf)
        sock.bind((0, GROUPS))
        return ConntrackSocket(sock, namespace_id("/proc/thread-self"))
    except PermissionError:
        sock.close()
        raise ConfigError(
            "subscribing to conntrack events needs CAP_NET_ADMIN (run as root or grant it)"
        ) from None
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot subscribe to conntrack events: {exc}") from None


class ConntrackReader(ReaderThread):
    """Reads conntrack events into a tracker, on a thread of its own."""

    def __init__(
        self,
        source: ConntrackSocket,
        tracker: FlowTracker,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__("callmap-conntrack", "conntrack", [source.sock])
        self._sock = source.sock
        self._tracker = tracker
        self._clock = clock
        self._overflows = LogThrottle(_WARN_EVERY)

    def flush(self, now: float) -> list[SocketObservation]:
        """The tracker's records of the window that ends now."""
        with self._lock:
            return self._tracker.flush(now)

    def rewrite(self, observations: Iterable[SocketObservation]) -> list[SocketObservation]:
        """Socket-table observations with the backends of live NAT'd flows filled in."""
        with self._lock:
            return self._tracker.rewrite(observations)

    def _read_until_stopped(self) -> None:
        sock, lock, clock, add = self._sock, self._lock, self._clock, self._tracker.add_datagram
        sock.setblocking(False)
        buffer = bytearray(_READ_SIZE)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(timeout=0.2):
                    continue
                # Drain what is queued now; one lock hold per burst, not per event.
                with lock:
                    for _ in range(256):
                        try:
                            size = sock.recv_into(buffer)
                        except BlockingIOError:
                            break
                        except OSError as exc:
                            if exc.errno != errno.ENOBUFS:
                                raise
                            self._overflowed()
                            continue
                        add(bytes(buffer[:size]), clock())

    def _overflowed(self) -> None:
        """The kernel dropped events it had for us: count it, say so (not too often)."""
        self._tracker.count_lost(DROP_QUEUE_OVERFLOW)
        due = self._overflows.add()
        if due is None:
            return
        log.warning(
            "conntrack events were lost: the kernel's event queue for callmap overflowed"
            " %d time(s) since the last warning (receive buffer %d bytes); connections"
            " opened and closed meanwhile are missing",
            due.occurrences,
            self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        )
