"""The addresses of a network namespace, read from ``/proc``.

The DNS folder needs the capturing node's own addresses: a DNS server that
runs in the node's namespace (a node-local cache on ``169.254.20.10``) sends
its upstream lookups from the node's other addresses, so once one of them
serves DNS, answers to any of them are the server's, not a client's.

- IPv4: ``net/fib_trie`` lists each local address as a leaf followed by a
  ``/32 host LOCAL`` line (the ``Local:`` table, and ``Main:`` on older kernels).
- IPv6: ``net/if_inet6`` has one address per line, 32 hex digits first.

Loopback addresses are left out: a stub resolver on ``127.0.0.53`` answers
the node's own processes and is no sign of a DNS server for pods. Lines that
do not parse are skipped. :func:`parse_fib_trie` and :func:`parse_if_inet6`
are pure; :func:`read_local_addresses` reads the files, in another namespace
if asked (on a thread of its own, as ``setns`` moves only the calling thread).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from capture.sniffer import in_netns

PROC_NET = Path("/proc/thread-self/net")


def parse_fib_trie(text: str) -> set[str]:
    """The local IPv4 addresses a ``fib_trie`` names, loopback left out."""
    addresses: set[str] = set()
    leaf: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            leaf = stripped[4:]
        elif leaf is not None and stripped.startswith("/32 host LOCAL"):
            try:
                address = ipaddress.IPv4Address(leaf)
            except ValueError:
                continue
            if not address.is_loopback:
                addresses.add(str(address))
    return addresses


def parse_if_inet6(text: str) -> set[str]:
    """The IPv6 addresses of ``if_inet6``, loopback left out."""
    addresses: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields or len(fields[0]) != 32:
            continue
        try:
            address = ipaddress.IPv6Address(int(fields[0], 16))
        except ValueError:
            continue
        if not address.is_loopback:
            addresses.add(str(address))
    return addresses


def _read(proc_net: Path) -> frozenset[str]:
    found: set[str] = set()
    for name, parse in (("fib_trie", parse_fib_trie), ("if_inet6", parse_if_inet6)):
        try:
            found |= parse((proc_net / name).read_text(errors="replace"))
        except OSError:
            continue  # no IPv6 in this kernel, or no /proc: nothing known
    return frozenset(found)


def read_local_addresses(netns: str | None = None, proc_net: Path = PROC_NET) -> frozenset[str]:
    """The non-loopback addresses of this thread's namespace, or of ``netns``."""
    if netns is None:
        return _read(proc_net)

    def inside() -> frozenset[str]:
        return _read(proc_net)

    try:
        return in_netns(netns, inside)
    except Exception:  # the capture sockets' opening reports a bad namespace
        return frozenset()
