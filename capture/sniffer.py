"""Live packet capture: AF_PACKET sockets with the shipped BPF filter, read off the loop.

With no interface named, one unbound ``ETH_P_ALL`` socket sees every
interface of the network namespace, including pod veths created later. With
interfaces named, scapy's Linux ``L2ListenSocket`` opens one socket per
interface (scapy is asked not to compile a filter: callmap attaches its own
precompiled program, so neither libpcap nor tcpdump is needed).

Frames are read by one named thread, never on the event loop, and handed to a
:class:`~capture.dnsfold.DnsFolder` under a lock that ``flush`` shares; once the
folder's window is full the thread says so (``on_full``), and the agent flushes it
before its time. Each
socket is read through a memory-mapped receive ring (:class:`RxRing`,
``TPACKET_V3``: the kernel hands over blocks of frames with their capture
times, one wakeup a block), or, with ``ring=False`` or where the kernel refuses
a ring, one ``recv`` a frame. The kernel's own drop counter
(``PACKET_STATISTICS``) is read at every flush and counted as ``kernel_drop``,
so a full ring or socket buffer is visible, not silent.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
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
from callmap.wire import DROP_KERNEL
from capture.bpf import SNAP_LENGTH, attach_filter
from capture.dnsfold import DnsFolder, FoldedAnswer
from capture.packetring import (
    PACKET_RX_RING,
    PACKET_VERSION,
    TPACKET_V3,
    BlockTaker,
    block_ready,
    release_block,
    ring_request,
)
from capture.procscan import namespace_id
from capture.readerthread import DEFAULT_RCVBUF, ReaderThread, set_receive_buffer

log = logging.getLogger(__name__)
T = TypeVar("T")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
_TPACKET_STATS = struct.Struct("II")  # tp_packets, tp_drops; reading resets them
CLONE_NEWNET = 0x40000000
RING_BLOCK_SIZE = 512 * 1024
"""Bytes a ring block: room for the largest frame the filter keeps (256 KiB) and many
small ones."""
RING_BLOCKS = 16
"""Blocks a ring: 8 MiB, resident from the start. At 100,000 DNS answers/s that is about
half a second of frames for the reader to fall behind by (docs/capture.md)."""
RING_RETIRE_MS = 50
"""A block that is not full is handed over this long after its first frame."""
DROP_BAD_RING_BLOCK = "bad_ring_block"


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


def on_new_thread(work: Callable[[], T], name: str) -> T:
    """``work()``'s result (or its exception, raised here), done by a new thread
    ``name`` that ends with it: a thread that ``work`` moves into another
    namespace is never the caller's, and needs no moving back."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def in_netns(name: str, work: Callable[[], T]) -> T:
    """``work()``'s result, done by a thread of its own inside the network namespace
    ``name``: setns must not move the event loop's thread."""

    def inside() -> T:
        enter_netns(netns_path(name))
        return work()

    return on_new_thread(inside, "callmap-in-netns")


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


class RxRing:
    """A ``TPACKET_V3`` receive ring on one packet socket, read block by block in
    the order the kernel fills them (the layout: :mod:`capture.packetring`)."""

    def __init__(
        self,
        sock: socket.socket,
        block_size: int = RING_BLOCK_SIZE,
        blocks: int = RING_BLOCKS,
        retire_ms: int = RING_RETIRE_MS,
    ) -> None:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, ring_request(block_size, blocks, retire_ms))
        self._map = mmap.mmap(sock.fileno(), block_size * blocks, mmap.MAP_SHARED)
        self._view = memoryview(self._map)
        self.block_size = block_size
        self.blocks = blocks
        self._next = 0
        self.bad_blocks = 0
        """Blocks whose headers pointed outside them (never seen from a kernel)."""

    def drain(self, take: BlockTaker, most: int) -> int:
        """Hand up to ``most`` ready blocks to ``take``, giving each block back once
        read; how many blocks were read."""
        view = self._view
        for done in range(most):
            start = self._next * self.block_size
            if not block_ready(view, start):
                return done
            _frames, sound = take(view, start, self.block_size)
            release_block(view, start)
            if not sound:
                self.bad_blocks += 1
            self._next = (self._next + 1) % self.blocks
        return most

    def close(self) -> None:
        try:
            self._view.release()
            self._map.close()
        except BufferError:  # a frame's view outlived its block: the mapping goes at exit
            log.warning("a receive ring is still referenced; leaving it mapped")


def open_ring(sock: socket.socket) -> RxRing | None:
    """A receive ring on ``sock``; None (and a warning) if the kernel refuses one."""
    try:
        return RxRing(sock)
    except OSError as exc:
        log.warning("no receive ring on a packet socket (%s): reading frame by frame", exc)
        return None


class Sniffer(ReaderThread):
    """Reads frames from packet sockets into a folder, on a thread of its own."""

    def __init__(
        self,
        sockets: list[socket.socket],
        folder: DnsFolder,
        *,
        ring: bool = True,
        on_full: Callable[[], object] | None = None,
    ) -> None:
        """``ring``: read through a receive ring where the kernel gives one.
        ``on_full``: called on this thread, once, when the folder's window is
        :attr:`~capture.dnsfold.DnsFolder.full`; again only after the next flush."""
        super().__init__("callmap-sniffer", "capture", sockets)
        self._folder = folder
        self._rings = {sock: open_ring(sock) for sock in sockets} if ring else {}
        self._on_full: Callable[[], object] = on_full or _nothing
        self._told_full = False

    def stop(self) -> None:
        super().stop()
        for ring in self._rings.values():
            if ring is not None:
                ring.close()

    def ringed(self) -> int:
        """How many of the sockets are read through a receive ring."""
        return sum(ring is not None for ring in self._rings.values())

    def flush(self, now: float) -> list[FoldedAnswer]:
        """The window's answers, each encoding as its wire record; also takes the kernel's
        drop count since the last flush."""
        with self._lock:
            drops = sum(_kernel_drops(sock) for sock in self._sockets)
            if drops:
                self._folder.count_frames_lost(DROP_KERNEL, drops)
            for ring in self._rings.values():
                if ring is not None and ring.bad_blocks:
                    log.error("%d receive ring blocks with unsound headers", ring.bad_blocks)
                    self._folder.count_frames_lost(DROP_BAD_RING_BLOCK, ring.bad_blocks)
                    ring.bad_blocks = 0
            closed = self._folder.close_window(now)
            self._told_full = False
        return closed.answers()  # sorted while the capture thread reads on

    def _read_until_stopped(self) -> None:
        selector = selectors.DefaultSelector()
        for sock in self._sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, data=sock)
        add_frame, take_block = self._folder.add_frame, self._folder.take_block
        lock, clock = self._lock, time.time
        buffer = bytearray(SNAP_LENGTH)  # one buffer: a fresh 256 KiB per frame would be slow
        view = memoryview(buffer)
        rings = [ring for ring in self._rings.values() if ring is not None]
        try:
            while not self._stop.is_set() and selector.get_map():
                events = selector.select(timeout=0.2)
                # Every ring, woken or not: a block handed over while this thread
                # was busy does not always wake the next select.
                for ring in rings:
                    while True:
                        with lock:  # one lock hold a block, not a frame
                            if not ring.drain(take_block, 1):
                                break
                            tell = self._first_full()
                        if tell:
                            self._on_full()
                for key, _ in events:
                    ready: socket.socket = key.data
                    if self._rings.get(ready) is not None:
                        # Woken for its blocks (read above) or for an error, taken here.
                        if code := ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                            self._socket_error(selector, ready, OSError(code, os.strerror(code)))
                        continue
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
                        tell = self._first_full()
                    if tell:
                        self._on_full()
        finally:
            selector.close()
        if not self._stop.is_set():
            self._failure = "no capture socket left"
            log.error("packet capture stopped: no capture socket left")

    def _first_full(self) -> bool:
        """Whether the folder's window is full and ``on_full`` was not called for it
        yet; the caller holds ``_lock``, and calls ``on_full`` once it has let go."""
        if self._told_full or not self._folder.full:
            return False
        self._told_full = True
        return True

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


def _nothing() -> None:
    """``on_full`` when nobody is to be told."""


def _kernel_drops(sock: socket.socket) -> int:
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
    except OSError:
        return 0
    _packets, drops = _TPACKET_STATS.unpack(raw)
    return int(drops)
