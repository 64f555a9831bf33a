"""One socket scan with the tables read through netlink ``sock_diag``, and their tcp_info.

The same scan as :func:`capture.procscan.scan_proc` (the pids grouped by
network namespace, one pid's view of each, the sockets classified), but each
namespace's sockets come from a ``sock_diag`` dump (:mod:`capture.sockdiag`)
entered through ``/proc/<pid>/ns/net`` instead of from its ``net/tcp`` and
``net/tcp6`` text. The agent uses it with ``--tcp-info``, which needs the
dump anyway for every client socket's RTT and retransmits: one pass over the
kernel's tables instead of two, and no text to format and parse. Only LISTEN
and ESTABLISHED sockets are asked for, so the kernel leaves the rest out.

Where a namespace cannot be dumped, the scan does not lose it:

- its pid has ended (:attr:`~capture.sockdiag.NamespaceDump.gone`) or has
  moved to another namespace: the next pid of the namespace is tried, as the
  /proc scan does, and counted the same way (``PID_VANISHED``, ``PID_MOVED``);
- anything else (no ``CAP_SYS_ADMIN`` or ``CAP_SYS_PTRACE``, a kernel error):
  the namespace is read from its /proc tables
  (:func:`capture.procscan.scan_tables`) and counted under
  :data:`DIAG_FAILED`; its sockets then come without tcp_info.

Blocking (file reads, a thread that enters namespaces): run it off the event
loop thread.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

from capture.inetdiag import DiagSocket
from capture.procnet import ByteOrder
from capture.procparse import NamespaceScan, ScanResult
from capture.procscan import (
    DEFAULT_PROC_ROOT,
    NAMESPACES,
    PID_MOVED,
    PID_VANISHED,
    WANTED_STATES,
    PidGroup,
    PodsOfPids,
    bump,
    group_pids,
    namespace_scan,
    scan_tables,
)
from capture.sockdiag import DiagSockets, NamespaceDump

__all__ = ["DIAG_FAILED", "DiagScan", "scan_diag"]

log = logging.getLogger(__name__)

DIAG_FAILED = "sock_diag_failed"
"""A namespace that could not be dumped through any of its pids for another
reason than a pid ending or moving: it was read from /proc instead, without
tcp_info."""

_STATES = sum(1 << state for state in WANTED_STATES)


@dataclass(frozen=True, slots=True)
class DiagScan:
    """One scan, and the dumped sockets of each namespace that was dumped."""

    result: ScanResult
    sockets: Mapping[int, list[DiagSocket]] = field(default_factory=dict)
    """By namespace id; a namespace read from /proc instead is not here."""


def scan_diag(
    proc_root: str = DEFAULT_PROC_ROOT,
    *,
    include_loopback: bool = False,
    byteorder: ByteOrder = sys.byteorder,
    only_netns: frozenset[int] | None = None,
    kept: DiagSockets | None = None,
    pods: PodsOfPids | None = None,
) -> DiagScan:
    """Scan every network namespace visible under ``proc_root`` once, each
    through ``sock_diag`` where it can be dumped; the arguments are those of
    :func:`capture.procscan.scan_proc`, whose result it gives (``byteorder``
    is for the namespaces read from /proc).

    ``kept`` holds the sock_diag sockets from one scan to the next (the agent
    keeps one for its life): a namespace is entered only the first time, and
    the sockets of namespaces this scan did not find are closed. Without it,
    the scan opens and closes its own. ``pods`` holds the pids' pods from one
    scan to the next, as for :func:`capture.procscan.scan_proc`."""
    root = proc_root.rstrip("/") or "/"
    counters: dict[str, int] = {}
    groups = {
        netns: group
        for netns, group in sorted(group_pids(root, counters, pods).items())
        if only_netns is None or netns in only_netns
    }
    with DiagSockets() if kept is None else nullcontext(kept) as sockets:
        dumps = _dump_groups(root, groups, counters, sockets)
    results: list[NamespaceScan] = []
    found: dict[int, list[DiagSocket]] = {}
    for netns, group in groups.items():
        done = dumps.get(netns)
        if done is None:
            scan = scan_tables(
                root,
                netns,
                group,
                counters,
                include_loopback=include_loopback,
                byteorder=byteorder,
            )
        else:
            pid, dump = done
            found[netns] = dump.sockets
            scan = namespace_scan(
                netns,
                group,
                pid,
                dump.sockets,
                counters,
                skipped=dump.dropped,
                include_loopback=include_loopback,
            )
        if scan is not None:
            results.append(scan)
    counters[NAMESPACES] = len(results)
    return DiagScan(ScanResult(tuple(results), counters), found)


def _dump_groups(
    root: str, groups: Mapping[int, PidGroup], counters: dict[str, int], kept: DiagSockets
) -> dict[int, tuple[int, NamespaceDump]]:
    """Each namespace's dump, by id, with a pid of it (the one it was entered
    through, when it was entered now); one that failed for a reason other than
    its pids ending or moving is left out (and counted under
    :data:`DIAG_FAILED`)."""
    through = {
        netns: group.pids[0] for netns, group in groups.items() if group.pids and netns in kept
    }
    untried = {
        netns: list(group.pids)
        for netns, group in groups.items()
        if group.pids and netns not in kept
    }
    while untried:
        tries = [(netns, pids.pop(0)) for netns, pids in untried.items()]
        entered = kept.open([f"{root}/{pid}/ns/net" for _, pid in tries])
        for (netns, pid), entry in zip(tries, entered, strict=True):
            if entry.netns == netns:
                through[netns] = pid
                del untried[netns]
            elif entry.gone or entry.error is None:
                bump(counters, PID_VANISHED if entry.gone else PID_MOVED)
                if not untried[netns]:  # every pid ended or moved: /proc will say so
                    del untried[netns]
            else:
                _failed(counters, netns, entry.error)
                del untried[netns]
    # The namespaces gone since the last scan, and any a moved pid led to: not scanned.
    kept.keep_only(groups)
    done: dict[int, tuple[int, NamespaceDump]] = {}
    for netns, dump in kept.dump(through, states=_STATES).items():
        if dump.error is None:
            done[netns] = (through[netns], dump)
        else:
            _failed(counters, netns, dump.error)
    return done


def _failed(counters: dict[str, int], netns: int, error: str) -> None:
    bump(counters, DIAG_FAILED)
    log.debug("namespace %d read from /proc: %s", netns, error)
