"""Helpers of the lab's integration tests: root checks, unique lab names, commands in pods."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from lab.processes import MARKERS

LAB_PROGRAMS = (*MARKERS, "kube-apiserver", "etcd")
"""Programs a lab runs: in its namespaces, and its own API server (``--kubernetes``)."""


def skip_without_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: the lab's integration tests need root (network namespaces)")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("dnsmasq", "dnsmasq-base")):
        if shutil.which(tool) is None:
            pytest.skip(f"SKIPPED LOUDLY: {tool} is missing (Debian package {package})")


def unique_name(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:5]}".replace("-", "")


def write_topology(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


def in_netns(netns: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def python_in(netns: str, code: str) -> str:
    """Run ``code`` with this interpreter inside ``netns``; its stdout (fails the test on error)."""
    result = in_netns(netns, sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout


def lab_leftovers(prefix: str, state_dir: Path) -> list[str]:
    """Anything of the lab still on the machine: namespaces, files, processes (its API server's
    too)."""
    found = []
    for folder in ("/var/run/netns", "/etc/netns"):
        if os.path.isdir(folder):
            found += [f"{folder}/{n}" for n in os.listdir(folder) if n.startswith(prefix)]
    if state_dir.exists():
        found.append(str(state_dir))
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if str(state_dir) in cmdline and any(marker in cmdline for marker in LAB_PROGRAMS):
            found.append(f"process {entry}: {cmdline}")
    return found
