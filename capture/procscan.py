"""Walk a /proc tree and read each network namespace's TCP tables once.

This is the thin I/O shell around :mod:`capture.procnet` (parsing) and
:mod:`capture.sockroles` (roles). One call of :func:`scan_proc` is one scan:

1. list the numeric pid directories of the proc root (``/proc`` on a host,
   ``/host/proc`` in the chart's DaemonSet);
2. group pids by network namespace, known by the inode of the pid's
   ``net/tcp`` (:func:`namespace_id`), and find each pid's pod from its
   ``cgroup`` file (once per process and namespace, with :class:`PodsOfPids`);
3. for each namespace, read ``net/tcp`` and ``net/tcp6`` of ONE pid (the
   lowest, which in a pod is usually the long-lived pause process) — the
   tables belong to the namespace, so every other pid would show the same;
4. parse and classify them.

Promises: a process that vanishes or is not readable mid-scan is normal — it
is skipped and counted (``PID_*`` counters), and the namespace falls back to its
next pid. Only an unlistable proc root is an error (:class:`ConfigError`).
A namespace gets a pod UID only when every pid in it agrees on one: the
node's own namespace holds host daemons and hostNetwork pods side by side, and
must not be credited to any one of them.

Why not the namespace's own inode, in the ``ns/net`` link: the kernel shows
another process's ``ns`` links only with ptrace read access, which would take
``CAP_SYS_PTRACE`` and with it every process's ``environ``, ``mem`` and open
files. ``net/tcp``, ``cgroup`` and the ``stat`` of a ``net`` file need no
capability, and each namespace's ``net/tcp`` is one proc entry with an inode
number of its own, drawn from the same pool as the namespaces' inodes: the
same for every pid in the namespace and unique on the node while it lives.

The parsing of ``cgroup`` files, and the scan's records, are pure and live
in :mod:`capture.procparse`. :mod:`capture.diagscan` is the same scan with
the tables read through netlink ``sock_diag`` instead (``--tcp-info``): it
shares steps 1, 2 and 4 (:func:`group_pids`, :func:`namespace_scan`), and
falls back to these tables (:func:`scan_tables`) where a dump fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from callmap.errors import ConfigError
from capture.procnet import ByteOrder, TcpState, parse_tcp_table
from capture.procparse import NamespaceScan, ScanResult, pod_uid_from_cgroup
from capture.sockroles import DROP_NOT_ESTABLISHED, TableSocket, classify

__all__ = [
    "DEFAULT_PROC_ROOT",
    "NAMESPACES",
    "NETNS_UNREADABLE",
    "PIDS",
    "PID_DENIED",
    "PID_ERROR",
    "PID_MOVED",
    "PID_VANISHED",
    "POD_AMBIGUOUS",
    "TABLES_READ",
    "TABLE_MISSING",
    "WANTED_STATES",
    "PidGroup",
    "PodsOfPids",
    "group_pids",
    "namespace_id",
    "namespace_scan",
    "scan_proc",
    "scan_tables",
]

DEFAULT_PROC_ROOT = "/proc"

# Scan counters: the keys of ScanResult.counters.
PIDS = "pids"
"""Numeric entries found in the proc root."""
NAMESPACES = "namespaces"
"""Network namespaces whose tables were read."""
TABLES_READ = "tables_read"
"""tcp/tcp6 files read (two per namespace when IPv6 is on)."""
PID_VANISHED = "pid_vanished"
"""A pid was gone by the time it was read (FileNotFoundError, ProcessLookupError)."""
PID_DENIED = "pid_denied"
"""A pid's files could not be read (PermissionError)."""
PID_ERROR = "pid_error"
"""Any other OSError on one pid's files."""
PID_MOVED = "pid_moved_netns"
"""A pid changed network namespace while its tables were read; not used."""
NETNS_UNREADABLE = "netns_unreadable"
"""A namespace none of whose pids could be read; it is missing from the scan."""
POD_AMBIGUOUS = "pod_ambiguous"
"""A namespace whose pids disagree about their pod; reported with no pod UID."""
TABLE_MISSING = "table_missing"
"""A namespace without ``net/tcp6`` (IPv6 disabled); read as empty. Also per
namespace in :attr:`NamespaceScan.skipped`."""

# LISTEN to know the servers, ESTABLISHED to report; everything else is
# filtered in the parser before its addresses are decoded.
WANTED_STATES = frozenset({TcpState.LISTEN, TcpState.ESTABLISHED})


def _fault(exc: OSError) -> str:
    """The ``PID_*`` counter an error reading a pid's files counts under."""
    if isinstance(exc, (FileNotFoundError, ProcessLookupError)):
        return PID_VANISHED
    if isinstance(exc, PermissionError):
        return PID_DENIED
    return PID_ERROR


def _read(path: str) -> bytes:
    # Unbuffered: one buffer, grown by FileIO.readall, no second copy.
    with open(path, "rb", buffering=0) as f:
        return f.readall()


def namespace_id(pid_dir: str) -> int:
    """The id of the network namespace of the process at ``pid_dir`` (``/proc/<pid>``,
    or ``/proc/thread-self``): the inode of its ``net/tcp`` table."""
    return os.stat(f"{pid_dir}/net/tcp").st_ino


def bump(counters: dict[str, int], key: str, by: int = 1) -> None:
    """Add ``by`` to a scan counter."""
    counters[key] = counters.get(key, 0) + by


@dataclass(slots=True)
class PidGroup:
    """The pids of one network namespace, ascending, and the pods they are in."""

    pids: list[int] = field(default_factory=list)
    pods: set[str | None] = field(default_factory=set)


class PodsOfPids:
    """The pod of each pid of the last walk, as its ``cgroup`` file said, kept from
    one walk to the next (the agent keeps one for its life): a walk then reads the
    ``cgroup`` files of new processes only. Reading one takes about 20 µs, the
    larger part of a walk's time a pid, and a node runs thousands of processes.

    A pid is taken for the process seen before while its /proc directory keeps
    its inode and its namespace stays the same. The kernel makes a new directory,
    with a new inode, for a new process, so a pid reused by another process is read
    again, and so is one that entered another namespace. A process that changes
    cgroup without changing namespace keeps the pod it had: a namespace's pids all
    belong to its pod, or (the node's own namespace) to no single one."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[int, tuple[int, int, str | None]] = {}
        """pid -> (inode of its /proc directory, namespace id, pod UID)."""

    def __len__(self) -> int:
        return len(self._known)


_NO_INODE = 1
"""The inode procfs lists for a directory it could not look up: not a process's own."""


def group_pids(
    root: str, counters: dict[str, int], pods: PodsOfPids | None = None
) -> dict[int, PidGroup]:
    """Every readable pid of the proc root ``root``, grouped by network namespace id
    (steps 1 and 2 of the module docstring); counts ``PIDS`` and pid faults. With
    ``pods``, a pid already known in the same namespace is not read again."""
    try:
        with os.scandir(root) as entries:
            listed = [(e.name, e.inode()) for e in entries]
    except OSError as exc:
        raise ConfigError(f"cannot list proc root {root!r}: {exc}") from exc
    found = sorted((int(n), inode) for n, inode in listed if n.isascii() and n.isdigit())
    counters[PIDS] = len(found)
    known = pods._known if pods is not None else {}
    seen: dict[int, tuple[int, int, str | None]] = {}
    namespaces: dict[int, PidGroup] = {}
    for pid, inode in found:
        base = f"{root}/{pid}"
        try:
            netns = namespace_id(base)
            before = known.get(pid)
            if before is not None and before[:2] == (inode, netns) and inode != _NO_INODE:
                pod = before[2]
            else:
                pod = pod_uid_from_cgroup(_read(f"{base}/cgroup").decode("latin-1"))
        except OSError as exc:
            bump(counters, _fault(exc))
            continue
        seen[pid] = (inode, netns, pod)
        ns = namespaces.get(netns)
        if ns is None:
            ns = namespaces[netns] = PidGroup()
        ns.pids.append(pid)
        ns.pods.add(pod)
    if pods is not None:
        pods._known = seen
    return namespaces


def _read_tables(
    root: str, netns: int, pids: list[int], counters: dict[str, int]
) -> tuple[int, bytes, bytes | None] | None:
    """(pid, tcp, tcp6 or None when absent) from the first pid that can be read."""
    for pid in pids:
        base = f"{root}/{pid}"
        try:
            tcp = _read(f"{base}/net/tcp")
            bump(counters, TABLES_READ)
            try:
                tcp6: bytes | None = _read(f"{base}/net/tcp6")
                bump(counters, TABLES_READ)
            except FileNotFoundError:
                if not os.path.isdir(f"{base}/net"):
                    raise  # the whole pid is gone, not just IPv6
                tcp6 = None
            # A pid that setns()'d while we read showed another namespace.
            moved = namespace_id(base) != netns
        except OSError as exc:
            bump(counters, _fault(exc))
            continue
        if moved:
            bump(counters, PID_MOVED)
            continue
        return pid, tcp, tcp6
    return None


def scan_proc(
    proc_root: str = DEFAULT_PROC_ROOT,
    *,
    include_loopback: bool = False,
    byteorder: ByteOrder = sys.byteorder,
    only_netns: frozenset[int] | None = None,
    pods: PodsOfPids | None = None,
) -> ScanResult:
    """Scan every network namespace visible under ``proc_root`` once.

    ``only_netns``, when given, limits the scan to those namespace ids (an
    agent that must see only some namespaces, like one lab node's pods).
    ``pods`` holds the pids' pods from one scan to the next (:class:`PodsOfPids`).

    Blocking (many small file reads): run it off the event loop thread.
    ``include_loopback`` is passed to :func:`capture.sockroles.classify`.
    """
    root = proc_root.rstrip("/") or "/"
    counters: dict[str, int] = {}
    results: list[NamespaceScan] = []
    for netns, group in sorted(group_pids(root, counters, pods).items()):
        if only_netns is not None and netns not in only_netns:
            continue
        scan = scan_tables(
            root, netns, group, counters, include_loopback=include_loopback, byteorder=byteorder
        )
        if scan is not None:
            results.append(scan)
    counters[NAMESPACES] = len(results)
    return ScanResult(tuple(results), counters)


def scan_tables(
    root: str,
    netns: int,
    group: PidGroup,
    counters: dict[str, int],
    *,
    include_loopback: bool = False,
    byteorder: ByteOrder = sys.byteorder,
) -> NamespaceScan | None:
    """One namespace's scan from its /proc tables (steps 3 and 4); None, counted
    under ``NETNS_UNREADABLE``, when none of its pids could be read."""
    tables = _read_tables(root, netns, group.pids, counters)
    if tables is None:
        bump(counters, NETNS_UNREADABLE)
        return None
    pid, tcp, tcp6 = tables
    skipped: dict[str, int] = {}
    parsed = [parse_tcp_table(tcp, states=WANTED_STATES, byteorder=byteorder)]
    if tcp6 is None:
        skipped[TABLE_MISSING] = 1
        bump(counters, TABLE_MISSING)
    else:
        parsed.append(parse_tcp_table(tcp6, states=WANTED_STATES, byteorder=byteorder))
    for table in parsed:
        for reason, count in table.skipped.items():
            bump(skipped, reason, count)
    return namespace_scan(
        netns,
        group,
        pid,
        [s for table in parsed for s in table.sockets],
        counters,
        filtered=sum(table.filtered for table in parsed),
        skipped=skipped,
        include_loopback=include_loopback,
    )


def namespace_scan(
    netns: int,
    group: PidGroup,
    pid: int,
    sockets: Sequence[TableSocket],
    counters: dict[str, int],
    *,
    filtered: int = 0,
    skipped: dict[str, int] | None = None,
    include_loopback: bool = False,
) -> NamespaceScan:
    """One namespace's scan from its sockets, however they were read (step 4):
    ``filtered`` sockets were left out for their state, ``skipped`` counts
    entries that could not be read, and the namespace's pod is the one its pids
    agree on (counted under ``POD_AMBIGUOUS`` when they do not)."""
    skipped = dict(skipped or {})
    classified = classify(sockets, include_loopback=include_loopback)
    for reason, count in classified.dropped.items():
        bump(skipped, reason, count)
    if filtered:
        bump(skipped, DROP_NOT_ESTABLISHED, filtered)
    if len(group.pods) > 1:
        bump(counters, POD_AMBIGUOUS)
    return NamespaceScan(
        netns=netns,
        pod_uid=next(iter(group.pods)) if len(group.pods) == 1 else None,
        pid=pid,
        pids=tuple(group.pids),
        connections=classified.connections,
        listeners=classified.listeners,
        sockets=len(sockets) + filtered,
        skipped=skipped,
    )
