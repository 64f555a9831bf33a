"""What the socket scan reads in /proc besides the TCP tables, and what a scan finds. Pure.

:func:`pod_uid_from_cgroup` reads a pod's UID from a ``cgroup`` file;
:class:`NamespaceScan` and :class:`ScanResult` are what one scan of
:mod:`capture.procscan` returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from capture.sockroles import Connection

_POD_UID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    # Static (file-defined) pods get an md5 hex digest as their UID.
    r"|[0-9a-f]{32}"
)


@dataclass(frozen=True, slots=True)
class NamespaceScan:
    """What one network namespace showed in one scan."""

    netns: int
    """The namespace's id on the node: the inode of its ``net/tcp`` table
    (:func:`capture.procscan.namespace_id`)."""
    pod_uid: str | None
    """The pod every pid of the namespace belongs to; None for host or mixed."""
    pid: int
    """The pid whose tables were read."""
    pids: tuple[int, ...]
    """Every pid seen in the namespace, ascending."""
    connections: tuple[Connection, ...]
    listeners: frozenset[tuple[str, int]]
    sockets: int
    """Socket entries parsed (before the state filter)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """procnet ``SKIP_*``, sockroles ``DROP_*`` and ``TABLE_MISSING`` counts."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One scan: every readable namespace, ascending by id, and the counters."""

    namespaces: tuple[NamespaceScan, ...]
    counters: dict[str, int] = field(default_factory=dict)


def _pod_uid_from_segment(segment: str) -> str | None:
    if segment.endswith(".slice"):
        # systemd driver: kubepods-burstable-pod<uid>.slice, with the UID's
        # dashes turned into underscores (a dash is systemd's slice separator).
        stem, sep, candidate = segment[: -len(".slice")].rpartition("-pod")
        if not sep or not stem:
            return None
    elif segment.startswith("pod"):
        # cgroupfs driver: /kubepods/<qos>/pod<uid>/<container>.
        candidate = segment[3:]
    else:
        return None
    uid = candidate.replace("_", "-")
    return uid if _POD_UID.fullmatch(uid) else None


def pod_uid_from_cgroup(text: str) -> str | None:
    """The pod UID in a ``/proc/<pid>/cgroup`` file, or None when not in a pod.

    Reads cgroup v1 (``<id>:<controllers>:<path>``) and v2 (``0::<path>``)
    lines, with the systemd or cgroupfs driver, for every QoS class. The path
    need not contain ``kubepods``: read from inside a container's own cgroup
    namespace it is relative (``/../../pod<uid>/<container>``).
    """
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for segment in parts[2].split("/"):
            uid = _pod_uid_from_segment(segment)
            if uid is not None:
                return uid
    return None
