"""Removing a lab: everything it created, found by its name prefix.

:func:`down` is idempotent and works without the state file (after a crash):
it stops the lab's processes (the pids in the state file, and any lab program
still running inside the lab's namespaces, found from ``/proc``), deletes
every network namespace named ``cml-<name>--*`` (their veths, routes and
nftables tables go with them), the ``/etc/netns/cml-<name>--*`` resolver files,
the lab's Kubernetes API server if it has one (:func:`lab.kubelab.stop_servers`;
its objects go with its etcd data) and the state directory. It reports what
it removed and anything it had to leave (a foreign process inside a lab
namespace is left alone and named).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import LabError
from lab.kubelab import lab_servers, stop_servers
from lab.processes import (
    ETC_NETNS,
    NETNS_DIR,
    ip_commands,
    is_lab_process,
    lab_namespaces,
    lab_processes,
    netns_inode,
    stop,
)
from lab.state import default_state_dir, load_state
from lab.topologyrecords import object_prefix

_LAB_NETNS = re.compile(r"^cml-([a-z][a-z0-9]*(?:-[a-z0-9]+)*)--")


@dataclass
class DownReport:
    name: str
    stopped: list[int] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    """Instance directories of the Kubernetes API servers stopped."""
    files: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    """What could not be removed, and why."""

    def __str__(self) -> str:
        lines = [
            f"lab {self.name}: stopped {len(self.stopped)} processes, "
            f"removed {len(self.namespaces)} namespaces and {len(self.files)} files"
        ]
        lines += [f"  stopped its Kubernetes API server ({item})" for item in self.servers]
        lines += [f"  left: {item}" for item in self.left]
        return "\n".join(lines)


def down(name: str, state_dir: Path | None = None) -> DownReport:
    """Remove lab ``name``; safe to run twice, or for a lab that never came up."""
    prefix = object_prefix(name)
    state_dir = state_dir or default_state_dir(name)
    report = DownReport(name)
    # A `lab up` killed mid-build may leave an `ip` command running that is about to
    # add one of its namespaces: stop those first, or the namespace comes after the list.
    stop(ip_commands(prefix))
    namespaces = lab_namespaces(prefix)
    inodes = [inode for inode in map(netns_inode, namespaces) if inode is not None]
    pids = set(lab_processes(inodes))
    try:
        state = load_state(state_dir)
    except LabError:
        state = None
    if state is not None:
        pids.update(p.pid for p in state.processes if is_lab_process(p.pid, inodes))
    report.stopped = stop(sorted(pids))
    report.servers = stop_servers(name, state_dir)
    for netns in namespaces:
        _delete_namespace(netns, report)
    for netns in lab_namespaces(prefix):  # made while the others were deleted
        if netns not in namespaces:
            _delete_namespace(netns, report)
    if ETC_NETNS.is_dir():
        for folder in sorted(ETC_NETNS.iterdir()):
            if folder.name.startswith(prefix):
                shutil.rmtree(folder, ignore_errors=True)
                report.files.append(str(folder))
    if state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
        report.files.append(str(state_dir))
    for pid in _survivors(inodes):
        report.left.append(f"process {pid} still runs in a deleted lab namespace (not the lab's)")
    return report


def _delete_namespace(netns: str, report: DownReport) -> None:
    result = subprocess.run(["ip", "netns", "del", netns], capture_output=True, text=True)
    if result.returncode == 0:
        report.namespaces.append(netns)
    else:
        report.left.append(f"namespace {netns}: {result.stderr.strip()}")


def leftover_labs() -> list[str]:
    """Names of labs that still have namespaces, resolver files or API servers on this machine."""
    names: set[str] = set(lab_servers())
    for folder in (NETNS_DIR, ETC_NETNS):
        if folder.is_dir():
            for entry in os.listdir(folder):
                match = _LAB_NETNS.match(entry)
                if match:
                    names.add(match.group(1))
    return sorted(names)


def _survivors(inodes: list[int]) -> list[int]:
    wanted = set(inodes)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in wanted:
                found.append(int(entry))
        except OSError:
            continue
    return found
