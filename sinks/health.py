"""How an edge's connections went, as people read it: one rule and one wording. Pure.

An edge carries ``health`` (since its previous announcement: how it is going
lately) and ``health_total`` (since it was new), from the nodes' connection
tracking (docs/wire-contract.md, ``FlowHealth``). Every output that shows
health takes its words and its "failing" rule from here, so the listing, the
picture and the exports never disagree.
"""

from __future__ import annotations

from typing import Any

import msgspec

from callmap.wire import Edge, FlowHealth

_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def failing(health: FlowHealth | None) -> bool:
    """Some connects failed (refused, timed out) or connections ended with a reset."""
    return health is not None and (health.failed > 0 or health.resets > 0)


def size(count: int) -> str:
    """Bytes in SI units with three significant digits: ``950 B``, ``1.2 MB``."""
    for scale, unit in _UNITS:
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"


def describe(health: FlowHealth | None) -> str:
    """``3 failed, 1 reset, 12 opened, 1.2 MB sent, 3.4 MB received``: failures first,
    parts that are 0 or unknown left out."""
    if health is None:
        return "no health reported"
    parts = [
        f"{health.failed} failed" if health.failed else "",
        f"{health.resets} reset{'s' if health.resets != 1 else ''}" if health.resets else "",
        f"{health.opened} opened" if health.opened else "",
        f"{health.closed} closed" if health.closed else "",
        f"{size(health.bytes_sent)} sent" if health.bytes_sent is not None else "",
        f"{size(health.bytes_received)} received" if health.bytes_received is not None else "",
    ]
    return ", ".join(part for part in parts if part) or "no connections ended or opened"


def health_fields(edge: Edge) -> dict[str, Any]:
    """``health``, ``health_total`` (as the wire has them) and ``failing``, for an edge
    with health, to put in a JSON output; nothing for an edge without, which is then
    written as it always was."""
    if edge.health is None and edge.health_total is None:
        return {}
    return {
        "health": msgspec.to_builtins(edge.health),
        "health_total": msgspec.to_builtins(edge.health_total),
        "failing": failing(edge.health),
    }
