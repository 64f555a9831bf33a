"""Giving up root once the packet sockets are open, as ``tcpdump -Z`` does.

The agent needs root and ``CAP_NET_RAW`` for one thing: opening its
``AF_PACKET`` sockets. Everything after that (reading them, the socket tables
and cgroups in the host's ``/proc``, talking to Kafka) any user may do. With
``--drop-to UID:GID`` the agent becomes that user and group as soon as its
sockets are open; the kernel then clears every capability it had. From then
on it cannot read another process's ``environ``, memory or open files: the
kernel allows those only to a process of the same user holding every
capability the target holds, or to one with ``CAP_SYS_PTRACE``. As root
without capabilities it could still read those of root processes that run
without any; as its own user it reads only its own.

Switching needs ``CAP_SETUID`` and ``CAP_SETGID`` (the chart grants them,
and they are gone after the switch). The supplementary groups become just
``GID``, so files the pod gives that group (``fsGroup``: Kafka credentials)
stay readable.
"""

from __future__ import annotations

import os
from pathlib import Path

from callmap.errors import ConfigError

STATUS = Path("/proc/self/status")


def parse_user(text: str) -> tuple[int, int]:
    """``UID:GID`` (or ``UID``, the group the same number) as two ids, neither root."""
    user, _, group = text.partition(":")
    try:
        uid, gid = int(user), int(group or user)
    except ValueError:
        raise ConfigError(f"--drop-to wants UID[:GID] in numbers, not {text!r}") from None
    if uid <= 0 or gid <= 0 or uid >= 2**32 - 1 or gid >= 2**32 - 1:
        raise ConfigError(f"--drop-to wants a user and group other than root, not {text!r}")
    return uid, gid


def capabilities(status: str, field: str = "CapEff") -> int:
    """A capability set from the text of ``/proc/<pid>/status``."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.strip(), 16)
    raise ValueError(f"no {field} line in the status")


def drop_to(uid: int, gid: int, status: Path = STATUS) -> None:
    """Become ``uid``/``gid`` for good (every thread: glibc applies it to all); a
    ConfigError if that fails or leaves a capability."""
    try:
        os.setgroups([gid])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except PermissionError:
        raise ConfigError(
            f"cannot switch to user {uid} and group {gid}: it needs CAP_SETUID and CAP_SETGID"
        ) from None
    text = status.read_text()
    left = capabilities(text, "CapEff") | capabilities(text, "CapPrm")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or left:
        raise ConfigError(f"switching to user {uid} left capabilities {left:#x}")
