"""Live packet capture: AF_PACKET sockets with the shipped BPF filter, read off the loop.

With no interface named, one unbound ``ETH_P_ALL`` socket sees every
interface of the network namespace, including pod veths created later. With
interfaces named, scapy's Linux ``L2ListenSocket`` opens one socket per
interface (scapy is asked not to compile a filter: callmap attaches its own
precompiled program, so neither libpcap nor tcpdump is needed).

Frames are read by one named thread, never on the event loop, and handed to a
:class:`~capture.dnsfold.DnsFolder` under a lock that ``flush`` shares. The
kernel's own drop counter (``PACKET_STATISTICS``) is read at every flush and
counted as ``kernel_drop``, so a socket buffer overrun is visible, not silent.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from callmap.errors import ConfigError
from callmap.wire import DROP_KERNEL, DnsAnswer
from capture.bpf import SNAP_LENGTH, attach_filter
from capture.dnsfold import DnsFolder
from capture.procscan import namespace_id
from capture.readerthread import DEFAULT_RCVBUF, ReaderThread, set_receive_buffer

log = logging.getLogger(__name__)
T = TypeVar("T")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
_TPACKET_STATS = struct.Struct("II")  # tp_packets, tp_drops; reading resets them
CLONE_NEWNET = 0x40000000


def open_all_interfaces(rcvbuf: int = DEFAULT_RCVBUF) -> socket.socket:
    """One packet socket on every interface, filtered before any frame is queued."""
    # An unbound socket cannot be given its protocol later (Python's bind wants
    # an interface name), so it queues frames from the start: attach_filter
    # drains those before the filter takes over.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    attach_filter(sock)
    set_receive_buffer(sock, rcvbuf)
    return sock


def open_interface(name: str, rcvbuf: int = DEFAULT_RCVBUF) -> socket.socket:
    """A packet socket on one interface, opened by scapy, with callmap's filter."""
    from scapy.arch.linux import L2ListenSocket  # the submodule only: no scapy.all

    scapy_log = logging.getLogger("scapy.runtime")
    level = scapy_log.level
    scapy_log.setLevel(logging.ERROR)  # scapy's interface cache is of another namespace
    try:
        listener: Any = L2ListenSocket(iface=name, promisc=False, nofilter=1)
    finally:
        scapy_log.setLevel(level)
    # Our own descriptor: scapy closes its socket when the listener is collected.
    sock: socket.socket = listener.ins.dup()
    listener.close()
    attach_filter(sock)  # drains what was queued before the filter, then filters
    set_receive_buffer(sock, rcvbuf)
    return sock


def enter_netns(path: str) -> None:
    """Move the *calling thread* into the network namespace at ``path``.

    Sockets keep the namespace they were created in, so the agent can open its
    capture sockets in another namespace (a lab node, a pod) while the rest of
    the process, its Kafka client included, stays where it is.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ConfigError(f"cannot enter network namespace {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def netns_path(name: str) -> str:
    """A network namespace's path: as given, or its name under /var/run/netns."""
    return name if "/" in name else str(Path("/var/run/netns") / name)


def in_netns(name: str, work: Callable[[], T]) -> T:
    """``work()``'s result, done by a thread of its own inside the network namespace
    ``name``: setns must not move the event loop's thread."""
    result: list[T] = []
    error: list[BaseException] = []

    def inside() -> None:
        try:
            enter_netns(netns_path(name))
            result.append(work())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=inside, name="callmap-in-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def scanned_namespace_ids(names: Sequence[str]) -> frozenset[int] | None:
    """The socket scan's ids of the named network namespaces (the inode of each
    one's ``net/tcp``, :func:`capture.procscan.namespace_id`); None when no name
    is given."""
    if not names:
        return None
    try:
        return frozenset(
            in_netns(name, lambda: namespace_id("/proc/thread-self")) for name in names
        )
    except OSError as exc:
        raise ConfigError(f"no network namespace {exc.filename}") from None


def open_sockets(
    interfaces: Sequence[str], netns: str | None = None, rcvbuf: int = DEFAULT_RCVBUF
) -> list[socket.socket]:
    """Capture sockets for ``interfaces`` (all when empty), in ``netns`` if given."""
    if netns is None:
        return _open(interfaces, rcvbuf)
    return in_netns(netns, lambda: _open(interfaces, rcvbuf))


def _open(interfaces: Sequence[str], rcvbuf: int) -> list[socket.socket]:
    try:
        if not interfaces:
            return [open_all_interfaces(rcvbuf)]
        return [open_interface(name, rcvbuf) for name in interfaces]
    except PermissionError:
        raise ConfigError("packet capture needs CAP_NET_RAW (run as root or grant it)") from None
    except OSError as exc:
        raise ConfigError(f"cannot open a packet socket: {exc}") from None


class Sniffer(ReaderThread):
    """Reads frames from packet sockets into a folder, on a thread of its own."""

    def __init__(self, sockets: list[socket.socket], folder: DnsFolder) -> None:
        super().__init__("callmap-sniffer", "capture", sockets)
        self._folder = folder

    def flush(self, now: float) -> list[DnsAnswer]:
        """The window's records; also takes the kernel's drop count since the last flush."""
        with self._lock:
            drops = sum(_kernel_drops(sock) for sock in self._sockets)
            if drops:
                self._folder.count_frames_lost(DROP_KERNEL, drops)
            return self._folder.flush(now)

    def _read_until_stopped(self) -> None:
        selector = selectors.DefaultSelector()
        for sock in self._sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, data=sock)
        add_frame, lock, clock = self._folder.add_frame, self._lock, time.time
        buffer = bytearray(SNAP_LENGTH)  # one buffer: a fresh 256 KiB per frame would be slow
        view = memoryview(buffer)
        try:
            while not self._stop.is_set() and selector.get_map():
                for key, _ in selector.select(timeout=0.2):
                    ready: socket.socket = key.data
                    # Drain what is queued now; one lock hold per burst, not per frame.
                    with lock:
                        for _ in range(256):
                            try:
                                size = ready.recv_into(buffer)
                            except BlockingIOError:
                                break
                            except OSError as exc:
                                self._socket_error(selector, ready, exc)
                                break
                            add_frame(view[:size], clock())
        finally:
            selector.close()
        if not self._stop.is_set():
            self._failure = "no capture socket left"
            log.error("packet capture stopped: no capture socket left")

    def _socket_error(
        self, selector: selectors.BaseSelector, sock: socket.socket, exc: OSError
    ) -> None:
        """A socket on an interface that went down says so once and stays usable."""
        if exc.errno in (errno.ENETDOWN, errno.ENXIO):
            self._folder.count_frames_lost("interface_down", 1)  # visible in stats and metrics
            log.warning("capture interface went down: %s", exc)
            return
        log.error("packet socket failed, no longer reading it: %s", exc)
        selector.unregister(sock)


def _kernel_drops(sock: socket.socket) -> int:
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
    except OSError:
        return 0
    _packets, drops = _TPACKET_STATS.unpack(raw)
    return int(drops)
