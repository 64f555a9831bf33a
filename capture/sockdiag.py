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
code: see :mod:`capture.inetdiag` on the shared TCP hash table.

Why the answer is not parsed by pyroute2, the project's netlink library: its
message objects cost about 57 µs a socket here, 6 s for a node's 100,000
sockets every scan. As for conntrack events (:mod:`capture.ctnetlink`), the
kernel's layout is read straight from the bytes instead, in the pure
:mod:`capture.inetdiag` (about 1.5 µs a socket).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from callmap.errors import ConfigError
from capture.inetdiag import (
    NETLINK_SOCK_DIAG,
    DiagSocket,
    DumpParser,
    dump_request,
    dump_request_both_families,
)
from capture.procscan import namespace_id
from capture.sniffer import enter_netns, netns_path

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


class DumpError(ConfigError):
    """A dump the kernel refused or ended with an error (its errno in the message)."""


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


def dump_here(
    buffer: bytearray | None = None, *, one_walk: bool = True
) -> tuple[list[DiagSocket], dict[str, int]]:
    """Every TCP socket of the calling thread's network namespace, and the drop
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
            both = _read_dump(nl, view, dump_request_both_families(seq=1), DumpParser())
            if both.error is None:
                return both.sockets, both.dropped
        sockets: list[DiagSocket] = []
        dropped: dict[str, int] = {}
        for seq, family in enumerate(FAMILIES, start=2):
            parser = DumpParser(sockets, dropped)  # both families into one list
            if _read_dump(nl, view, dump_request(family, seq=seq), parser).error is not None:
                raise DumpError(f"sock_diag dump of family {family} failed: errno {parser.error}")
    return sockets, dropped


def _read_dump(
    nl: socket.socket, view: memoryview, request: bytes, parser: DumpParser
) -> DumpParser:
    """``request`` sent, and its answer fed to ``parser`` to its end."""
    nl.send(request)
    while not parser.feed(view[: nl.recv_into(view)]):
        pass
    return parser


def dump_namespaces(paths: Sequence[str]) -> list[NamespaceDump]:
    """Every TCP socket of each network namespace in ``paths`` (names under
    /var/run/netns or paths), in order, read by one thread of its own that
    enters each in turn.

    A namespace that cannot be entered or dumped (gone since it was listed, a
    kernel error) is reported with its :attr:`NamespaceDump.error`, and the
    pass goes on."""
    dumps: list[NamespaceDump] = []
    failure: list[BaseException] = []

    def walk() -> None:
        buffer = bytearray(RECV_BUFFER)
        try:
            for path in paths:
                dumps.append(_dump_one(path, buffer))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=walk, name="callmap-sockdiag")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return dumps


def _dump_one(path: str, buffer: bytearray) -> NamespaceDump:
    try:
        enter_netns(netns_path(path))
        netns = namespace_id("/proc/thread-self")
    except (ConfigError, OSError) as exc:
        return NamespaceDump(path, None, error=str(exc))
    try:
        sockets, dropped = dump_here(buffer)
    except (DumpError, OSError) as exc:
        return NamespaceDump(path, netns, error=f"{type(exc).__name__}: {exc}")
    return NamespaceDump(path, netns, sockets, dropped)
