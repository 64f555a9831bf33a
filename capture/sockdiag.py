"""Read network namespaces' TCP sockets from the kernel through netlink ``sock_diag``.

The I/O shell around :mod:`capture.inetdiag`: a ``NETLINK_SOCK_DIAG`` socket
answers for the network namespace it was created in, so a thread enters a
namespace (:func:`capture.sniffer.enter_netns`), opens the socket there, asks
for every AF_INET and AF_INET6 TCP socket with its ``tcp_info``, and reads
the answer to its end. :func:`dump_namespaces` walks many namespaces with one
such thread, which moves from one to the next; there is no need to go back,
as the thread ends with the pass, and the caller's threads never move.

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

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from callmap.errors import CallmapError, ConfigError
from capture.inetdiag import (
    ALL_TCP_STATES,
    NETLINK_SOCK_DIAG,
    DiagSocket,
    DumpParser,
    dump_request,
    dump_request_both_families,
)
from capture.procscan import namespace_id
from capture.sniffer import enter_netns, netns_path, on_new_thread

__all__ = [
    "RECV_BUFFER",
    "DumpError",
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
    view = memoryview(buffer)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(DUMP_TIMEOUT)
        if one_walk:
            both = _read_dump(
                nl, view, dump_request_both_families(seq=1, states=states), DumpParser()
            )
            if both.error is None:
                return both.sockets, both.dropped
        sockets: list[DiagSocket] = []
        dropped: dict[str, int] = {}
        for seq, family in enumerate(FAMILIES, start=2):
            parser = DumpParser(sockets, dropped)  # both families into one list
            request = dump_request(family, seq=seq, states=states)
            if _read_dump(nl, view, request, parser).error is not None:
                raise DumpError(
                    f"sock_diag dump of family {family} failed: errno {parser.error}",
                    parser.error,
                )
    return sockets, dropped


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
    (names under /var/run/netns or paths), in order, read by one thread of its
    own that enters each in turn.

    A namespace that cannot be entered or dumped (gone since it was listed, a
    kernel error) is reported with its :attr:`NamespaceDump.error`, and the
    pass goes on."""

    def walk() -> list[NamespaceDump]:
        buffer = bytearray(RECV_BUFFER)
        return [_dump_one(path, buffer, states) for path in paths]

    return on_new_thread(walk, "callmap-sockdiag")


def _dump_one(path: str, buffer: bytearray, states: int) -> NamespaceDump:
    """The calling thread moved into the namespace at ``path``, and its dump."""
    try:
        enter_netns(netns_path(path))
        netns = namespace_id("/proc/thread-self")
    except (ConfigError, OSError) as exc:
        gone = isinstance(exc, FileNotFoundError | ProcessLookupError)
        return NamespaceDump(path, None, error=f"{type(exc).__name__}: {exc}", gone=gone)
    try:
        sockets, dropped = dump_here(buffer, states=states)
    except (DumpError, OSError) as exc:
        return NamespaceDump(path, netns, error=f"{type(exc).__name__}: {exc}")
    return NamespaceDump(path, netns, sockets, dropped)
