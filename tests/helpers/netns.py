"""Network namespaces that tests and benches make for themselves, and always take down."""

from __future__ import annotations

import contextlib
import subprocess
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
