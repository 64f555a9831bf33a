"""Network namespaces that tests and benches make for themselves, and always take down."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator


@contextlib.contextmanager
def network_namespaces(*names: str) -> Iterator[tuple[str, ...]]:
    """Fresh network namespaces ``names``, loopback up in each; on the way out, however
    it is taken (a failed set-up included), every one of them that was made is deleted."""
    made: list[str] = []
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            made.append(name)
            subprocess.run(
                ["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True
            )
        yield names
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def wait_for_local_routes(namespace: str, *addresses: str, timeout: float = 10.0) -> None:
    """Return once ``namespace`` routes every one of ``addresses`` to itself.

    ``ip addr add`` returns before an IPv6 address is usable: the kernel inserts its
    local route later, from its address-configuration work queue (``nodad`` or not),
    and that work waits for the routing lock, which other namespaces being made or
    taken down hold. Until then a connection to the address meets the prefix route
    alone, which on ``lo`` is a reject route: ENETUNREACH (seen in CI, reproduced
    with namespaces churning beside the test)."""
    deadline = time.monotonic() + timeout
    for address in addresses:
        while _route_type(namespace, address) != "local":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{namespace}: no local route to {address} after {timeout} s")
            time.sleep(0.01)


def _route_type(namespace: str, address: str) -> str | None:
    done = subprocess.run(
        ["ip", "-n", namespace, "-j", "route", "get", address],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    routes = json.loads(done.stdout)
    return str(routes[0].get("type", "unicast")) if routes else None
