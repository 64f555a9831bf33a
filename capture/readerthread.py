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
import threading
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)

DEFAULT_RCVBUF = 16 * 1024 * 1024
"""Room in the kernel for a burst of messages between two reads."""
SO_RCVBUFFORCE = 33
"""Linux: with CAP_NET_ADMIN a socket's buffer may exceed ``net.core.rmem_max``."""


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
