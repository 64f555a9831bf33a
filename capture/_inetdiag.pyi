"""Types of capture/_inetdiag.c, the message loop of capture.inetdiag.DumpParser.feed."""

from collections.abc import Callable
from typing import Any

def feed(
    data: bytes | bytearray | memoryview,
    sockets: list[Any],
    dropped: dict[str, int],
    names4: dict[bytes, str],
    names6: dict[bytes, str],
    states: tuple[object | None, ...],
    make: Callable[..., Any],
    reasons: tuple[str, ...],
) -> int | None: ...
