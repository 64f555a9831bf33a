"""The cgroups a development node's kubelet keeps its pods under.

Two kubelets share this machine, so each gets a cgroup root of its own
(``/callmap/<cluster>/<node>``) in every hierarchy: the kubelet refuses a root
that does not exist, and makes ``kubepods/...`` below it. On cgroup v1 a new
``cpuset`` cgroup has no CPUs or memory nodes until given its parent's.
:func:`remove_root` removes the tree once the node's processes are gone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


def hierarchies(base: Path = CGROUP_FS) -> list[Path]:
    """The mounted hierarchies: each v1 controller's, or the one v2 tree."""
    if (base / "cgroup.controllers").exists():
        return [base]
    return sorted(p for p in base.iterdir() if p.is_dir() and p.name != "unified")


def ensure_root(root: str, base: Path = CGROUP_FS) -> None:
    """Create ``root`` (``/a/b/c``) in every hierarchy, cpusets filled from their parents."""
    for hierarchy in hierarchies(base):
        path = hierarchy
        for part in root.strip("/").split("/"):
            parent, path = path, path / part
            path.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                for setting in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / setting).read_text().strip():
                        (path / setting).write_text((parent / setting).read_text())


def exists(root: str, base: Path = CGROUP_FS) -> bool:
    """True while ``root`` is in any hierarchy."""
    return any((hierarchy / root.strip("/")).exists() for hierarchy in hierarchies(base))


def remove_root(root: str, base: Path = CGROUP_FS) -> int:
    """Remove ``root`` and everything below it where empty, deepest first; how many went."""
    removed = 0
    for hierarchy in hierarchies(base):
        top = hierarchy / root.strip("/")
        if not top.exists():
            continue
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):  # still has processes: left in place
                directory.rmdir()
                removed += 1
        with contextlib.suppress(OSError):
            top.rmdir()
            removed += 1
        for parent in top.relative_to(hierarchy).parents:  # the empty /callmap/<cluster> above
            if parent != Path("."):
                with contextlib.suppress(OSError):
                    (hierarchy / parent).rmdir()
    return removed
