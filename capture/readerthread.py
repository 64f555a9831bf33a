"""A thread that reads kernel sockets for the agent until it is stopped.

The packet sockets (:class:`capture.sniffer.Sniffer`) and the
connection-tracking socket (:class:`capture.conntrack.ConntrackReader`) are
read on threads of their own, so that a burst of the kernel's messages is
taken at once and never waits for the event loop. Both need the same life:
start, stop (closing the sockets), and, for the liveness probe, why the
thread stopped reading if it did; and the same room in the kernel for a burst
(:func:`set_receive_buffer`).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)

DEFAULT_RCVBUF = 16 * 1024 * 1024
"""Room in the kernel for a burst of messages between two reads."""
SO_RCVBUFFORCE = 33
"""Linux: with CAP_NET_ADMIN a socket's buffer may exceed ``net.core.rmem_max``."""


SWITCH_INTERVAL = 0.001
"""Seconds a thread keeps the interpreter while another waits for it (CPython's
default: 0.005), in an agent that reads packets through a receive ring. Under
load the ring's reader runs Python for long stretches (it waits in the kernel
only once no block is ready), and the event loop needs the interpreter for a
moment at each step of a Kafka round trip: waiting 5 ms at each, the agent's
publishing fell behind at 85,000 distinct answers/s and its outbox grew by
about 4 MB a second (25-61 MB at the end of 8 s trials), where with 1 ms it
stayed under 17 MB (alternating trials, 2026-12-07). A reader of ``recv``
calls lets go at every frame: there 1 ms only cost (one trial in three lossy
at 65,000/s, none with 5 ms), so it keeps the default."""


def share_interpreter() -> None:
    """Let a waiting thread have the interpreter after :data:`SWITCH_INTERVAL`."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def set_receive_buffer(sock: socket.socket, size: int) -> None:
    """``size`` bytes of receive buffer; without CAP_NET_ADMIN what the node allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class ReaderThread(ABC):
    """Reads ``sockets`` on a daemon thread in :meth:`_read_until_stopped` (a subclass's),
    which returns once ``_stop`` is set."""

    def __init__(self, name: str, what: str, sockets: list[socket.socket]) -> None:
        """``name``: the thread's; ``what``: what it reads, for messages ("capture")."""
        self._what = what
        self._sockets = sockets
        self._lock = threading.Lock()
        """Held while a burst is taken, and by readers of what it was taken into."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._failure: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and close the sockets; returns once the thread has ended."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def failure(self) -> str | None:
        """Why the thread stopped reading, once it has; None while it reads (and
        before it starts, and after :meth:`stop`)."""
        if self._stop.is_set() or self._thread.ident is None or self._thread.is_alive():
            return None
        return self._failure or f"the {self._what} thread ended"

    def _read(self) -> None:
        try:
            self._read_until_stopped()
        except Exception as exc:  # logged here; the liveness probe reports it
            self._failure = f"the {self._what} thread died: {exc!r}"
            log.exception("%s thread died", self._what)

    @abstractmethod
    def _read_until_stopped(self) -> None:
        """Read until ``_stop`` is set, taking each burst under ``_lock``."""
