"""Read network namespaces' TCP sockets from the kernel through netlink ``sock_diag``.

The I/O shell around :mod:`capture.inetdiag`: a ``NETLINK_SOCK_DIAG`` socket
answers for the network namespace it was created in, so a thread enters a
namespace (:func:`capture.sniffer.enter_netns`), opens the socket there, asks
for every AF_INET and AF_INET6 TCP socket with its ``tcp_info``, and reads
the answer to its end. :class:`DiagSockets` opens sockets in many namespaces
with one such thread, which moves from one to the next (there is no need to go
back, as the thread ends with the walk, and the caller's threads never move),
and keeps them open for the next pass, which then needs no entering: the
agent's scans (:mod:`capture.diagscan`) use it so. :func:`dump_namespaces` is
one such pass.

Compared with reading ``/proc/<pid>/net/tcp{,6}`` (:mod:`capture.procscan`):
the kernel does not format text and the parser reads fixed layouts, and each
socket comes with its RTT, retransmits and byte counts. But entering a
namespace takes ``CAP_SYS_ADMIN`` (``setns``) and a handle on it: a path the
container runtime bind-mounted (``/var/run/netns/cni-...`` with containerd
and CRI-O), or ``/proc/<pid>/ns/net``, which the kernel shows only with
ptrace read access, that is ``CAP_SYS_PTRACE``, which the /proc scan was
built to do without (docs/capture.md, "Socket tables"). The dump itself
needs no capability.

What a pass costs depends on the node's kernel settings more than on this
code, and why the answer is parsed here rather than by pyroute2: see
:mod:`capture.inetdiag`.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from callmap.errors import CallmapError, ConfigError
from capture.inetdiag import (
    ALL_TCP_STATES,
    NETLINK_SOCK_DIAG,
    DiagSocket,
    DumpParser,
    dump_request,
    dump_request_both_families,
)
from capture.native import LOOP_IN_C
from capture.procscan import namespace_id
from capture.sniffer import enter_netns, netns_path, on_new_thread

__all__ = [
    "DUMP_THREADS",
    "RECV_BUFFER",
    "DiagSockets",
    "DumpError",
    "Entered",
    "NamespaceDump",
    "dump_here",
    "dump_namespaces",
]

RECV_BUFFER = 64 * 1024
"""Bytes a ``recv``: the kernel fills a dump's datagrams up to 32 KiB at most
(the larger of a page and the largest read so far, capped there), so this
never cuts one short."""
DUMP_TIMEOUT = 5.0
"""Seconds to wait for the next datagram of a dump before giving up on it."""
FAMILIES = (socket.AF_INET, socket.AF_INET6)
DUMP_THREADS = 2
"""Threads that dump kept sockets at once (:meth:`DiagSockets.dump`): the
kernel builds a dump's messages inside ``recv``, without the GIL, so one
thread's dump goes on while another parses. Measured on 500 namespaces and
100,000 sockets, 2 cores (docs/capture.md), with the Python loop: 0.27 s with
one, 0.20 s with two, 0.22 s with three; with the C loop, on a slower day:
0.195-0.256 s with one, 0.165-0.192 s with two."""


class DumpError(CallmapError):
    """A dump the kernel refused or ended with an error, or a netlink socket
    that read empty in the middle of one (a timeout is the socket's OSError)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        """The kernel's errno, when it ended the dump with one."""


@dataclass(frozen=True, slots=True)
class NamespaceDump:
    """Every TCP socket of one network namespace, or why there are none."""

    path: str
    """The namespace as given (a name under /var/run/netns, or a path)."""
    netns: int | None
    """Its id as the /proc scan knows it (:func:`capture.procscan.namespace_id`);
    None when it could not be entered."""
    sockets: list[DiagSocket] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    """:mod:`capture.inetdiag` ``DROP_*`` counts, both families together."""
    error: str | None = None
    """Why the namespace could not be entered or dumped; its sockets are then
    missing or partial."""
    gone: bool = False
    """The path was not there (its process has ended): another pid of the
    namespace may still lead into it."""


def dump_here(
    buffer: bytearray | None = None, *, one_walk: bool = True, states: int = ALL_TCP_STATES
) -> tuple[list[DiagSocket], dict[str, int]]:
    """Every TCP socket of the calling thread's network namespace in ``states``
    (``1 << TcpState`` bits; the kernel leaves the others out), and the drop
    counts; ``buffer`` (at least :data:`RECV_BUFFER` bytes) is reused if given.

    ``one_walk`` asks for both families at once
    (:func:`capture.inetdiag.dump_request_both_families`: half the kernel's
    work), and a family at a time only if the kernel refuses that.

    Raises :class:`DumpError` when the kernel ends a dump with an error, and
    OSError when the netlink socket fails."""
    if buffer is None:
        buffer = bytearray(RECV_BUFFER)
    with _diag_socket() as nl:
        sockets, dropped, _ = _dump_on(nl, memoryview(buffer), states, one_walk)
    return sockets, dropped


def _diag_socket() -> socket.socket:
    """A sock_diag socket of the calling thread's network namespace."""
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    nl.settimeout(DUMP_TIMEOUT)
    return nl


def _dump_on(
    nl: socket.socket, view: memoryview, states: int, one_walk: bool
) -> tuple[list[DiagSocket], dict[str, int], bool]:
    """:func:`dump_here` on the sock_diag socket ``nl``, and whether the kernel
    took the one walk."""
    if one_walk:
        request = dump_request_both_families(seq=1, states=states)
        both = _read_dump(nl, view, request, DumpParser(native=LOOP_IN_C))
        if both.error is None:
            return both.sockets, both.dropped, True
    sockets: list[DiagSocket] = []
    dropped: dict[str, int] = {}
    for seq, family in enumerate(FAMILIES, start=2):
        parser = DumpParser(sockets, dropped, native=LOOP_IN_C)  # both families into one list
        request = dump_request(family, seq=seq, states=states)
        if _read_dump(nl, view, request, parser).error is not None:
            raise DumpError(
                f"sock_diag dump of family {family} failed: errno {parser.error}", parser.error
            )
    return sockets, dropped, False


def _read_dump(
    nl: socket.socket, view: memoryview, request: bytes, parser: DumpParser
) -> DumpParser:
    """``request`` sent, and its answer fed to ``parser`` to its end.

    Raises :class:`DumpError` on an empty read: no netlink message is empty,
    and reading on would spin."""
    nl.send(request)
    while True:
        size = nl.recv_into(view)
        if size == 0:
            raise DumpError("sock_diag socket gave an empty read before the dump ended")
        if parser.feed(view[:size]):
            return parser


def dump_namespaces(paths: Sequence[str], *, states: int = ALL_TCP_STATES) -> list[NamespaceDump]:
    """Every TCP socket in ``states`` of each network namespace in ``paths``
    (names under /var/run/netns or paths), in order: one pass of
    :class:`DiagSockets`, its sockets closed at the end.

    A namespace that cannot be entered or dumped (gone since it was listed, a
    kernel error) is reported with its :attr:`NamespaceDump.error`, and the
    pass goes on."""
    with DiagSockets() as kept:
        entered = kept.open(paths)
        dumps = kept.dump({e.netns for e in entered if e.netns is not None}, states=states)
    return [
        NamespaceDump(e.path, None, error=e.error, gone=e.gone)
        if e.netns is None
        else replace(dumps[e.netns], path=e.path)
        for e in entered
    ]


@dataclass(frozen=True, slots=True)
class Entered:
    """A namespace path entered to open a sock_diag socket there, or why not."""

    path: str
    netns: int | None
    """The id of the namespace entered; None when it could not be entered or
    its socket could not be opened."""
    error: str | None = None
    gone: bool = False
    """The path was not there (its process has ended)."""


class DiagSockets:
    """sock_diag sockets kept open from one pass to the next, one per network
    namespace, by its id (:func:`capture.procscan.namespace_id`).

    A socket answers for the namespace it was created in, whichever thread
    reads it: once open, a namespace is dumped without entering it again (no
    ``setns``, no new socket: about a seventh of a pass), and several threads
    can dump at once. A socket also holds its namespace: the kernel frees a
    namespace whose processes have all ended only once its last socket is
    closed. :meth:`keep_only` closes those of the namespaces a pass no longer
    finds, :meth:`close` all of them.
    """

    def __init__(self, *, threads: int = DUMP_THREADS) -> None:
        self._open: dict[int, tuple[str, socket.socket]] = {}
        self._threads = max(1, threads)
        self._one_walk = True  # until the kernel refuses it

    def __contains__(self, netns: object) -> bool:
        return netns in self._open

    def __len__(self) -> int:
        return len(self._open)

    def __enter__(self) -> DiagSockets:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self, paths: Sequence[str]) -> list[Entered]:
        """Enter each namespace of ``paths`` (names under /var/run/netns or
        paths) in turn, from one thread of its own, and keep a socket opened
        there, unless its namespace has one already; what each path led to, in
        order."""
        return on_new_thread(lambda: [self._open_one(path) for path in paths], "callmap-sockdiag")

    def _open_one(self, path: str) -> Entered:
        try:
            enter_netns(netns_path(path))
            netns = namespace_id("/proc/thread-self")
            if netns not in self._open:
                self._open[netns] = (path, _diag_socket())
        except (ConfigError, OSError) as exc:
            gone = isinstance(exc, FileNotFoundError | ProcessLookupError)
            return Entered(path, None, f"{type(exc).__name__}: {exc}", gone)
        return Entered(path, netns)

    def dump(
        self, namespaces: Iterable[int], *, states: int = ALL_TCP_STATES
    ) -> dict[int, NamespaceDump]:
        """Every TCP socket in ``states`` of each of ``namespaces`` that has a
        socket kept, by id, dumped by up to ``threads`` threads at once (the
        caller's among them). A socket whose dump fails is closed (the next
        :meth:`open` makes a new one) and its namespace's dump says why."""
        work: queue.SimpleQueue[int] = queue.SimpleQueue()
        for netns in namespaces:
            if netns in self._open:
                work.put(netns)
        dumps: dict[int, NamespaceDump] = {}
        failed: list[BaseException] = []

        def drain() -> None:
            view = memoryview(bytearray(RECV_BUFFER))
            try:
                while True:
                    try:
                        netns = work.get_nowait()
                    except queue.Empty:
                        return
                    dumps[netns] = self._dump_one(netns, view, states)
            except BaseException as exc:  # raised in the caller's thread, below
                failed.append(exc)

        helpers = [
            threading.Thread(target=drain, name="callmap-sockdiag", daemon=True)
            for _ in range(min(self._threads, work.qsize()) - 1)
        ]
        for helper in helpers:
            helper.start()
        try:
            drain()
        finally:
            for helper in helpers:
                helper.join()
        if failed:
            raise failed[0]
        return dumps

    def _dump_one(self, netns: int, view: memoryview, states: int) -> NamespaceDump:
        path, nl = self._open[netns]
        try:
            sockets, dropped, one_walk = _dump_on(nl, view, states, self._one_walk)
        except (DumpError, OSError) as exc:
            self._open.pop(netns, None)  # whatever is left of the dump goes with it
            nl.close()
            return NamespaceDump(path, netns, error=f"{type(exc).__name__}: {exc}")
        self._one_walk = one_walk
        return NamespaceDump(path, netns, sockets, dropped)

    def keep_only(self, namespaces: Collection[int]) -> None:
        """Close the sockets of namespaces not in ``namespaces``."""
        for netns in [netns for netns in self._open if netns not in namespaces]:
            self._open.pop(netns)[1].close()

    def close(self) -> None:
        """Close every socket kept."""
        self.keep_only(())
