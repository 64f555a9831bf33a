"""A network namespace of the test's own, joined to this host by a veth pair whose
link the test can cut: a process in it loses the host (and a broker listening on
the host's end) with no reset and no goodbye, as when a node's link fails.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from devtools.process import claim, unclaim


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Link:
    namespace: str
    """The namespace's name (``ip netns``)."""
    host_ip: str
    """The host's end of the link."""
    inside: str
    """The interface in the namespace."""

    def cut(self) -> None:
        """Take the namespace's end of the link down: nothing passes either way."""
        _ip("-n", self.namespace, "link", "set", self.inside, "down")

    def mend(self) -> None:
        _ip("-n", self.namespace, "link", "set", self.inside, "up")


@contextmanager
def linked_namespace() -> Iterator[Link]:
    """A new namespace and a /30 between it and the host (10.78.N.0/30), removed at the end.

    N is claimed (:func:`devtools.process.claim`), so that test workers side
    by side never route the same subnet to two links."""
    tag = uuid.uuid4().hex[:6]
    namespace, host_end, inside = f"callmap-cut-{tag}", f"cmc{tag}h", f"cmc{tag}n"
    subnet = _claimed_subnet()
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("addr", "add", f"{subnet}.1/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("-n", namespace, "addr", "add", f"{subnet}.2/30", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        yield Link(namespace, f"{subnet}.1", inside)
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        unclaim(f"netcut-{subnet}")


def _claimed_subnet() -> str:
    """``10.78.N``, claimed as ``netcut-10.78.N`` until :func:`unclaim`."""
    for n in random.sample(range(256), 256):
        if claim(f"netcut-10.78.{n}"):
            return f"10.78.{n}"
    raise RuntimeError("every 10.78.N.0/30 is taken by other test processes")
