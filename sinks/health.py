"""How an edge's connections went, as people read it: two rules and one wording. Pure.

An edge carries ``health`` (since its previous announcement: how it is going
lately) and ``health_total`` (since it was new), from the nodes' connection
tracking and, where the capture agent reads ``tcp_info``, the round-trip
times and retransmits of the client's sockets (docs/wire-contract.md,
``FlowHealth``). Every output that shows health takes its words, its
"failing" rule and its "slow" rule from here, so the listing, the picture and
the exports never disagree.
"""

from __future__ import annotations

from typing import Any

import msgspec

from callmap.wire import Edge, FlowHealth, RttSamples
from callmap.wire.health import RTT_BUCKETS_PER_OCTAVE

SLOW_MS = 200.0
"""A call is slow when its p99 round-trip time is at least this many milliseconds
(``--slow-ms``): far above what a call within one region takes, and the point past
which people notice a request that needs a few round trips."""

_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"))

_LONGEST_RTT_US = 2**32
"""More than any RTT a socket reports: ``tcpi_rtt`` is 32 bits of µs."""
_LAST_BUCKET = 32 * RTT_BUCKETS_PER_OCTAVE
"""The bucket of :data:`_LONGEST_RTT_US`: none past it holds a real sample."""


def failing(health: FlowHealth | None) -> bool:
    """Some connects failed (refused, timed out) or connections ended with a reset."""
    return health is not None and (health.failed > 0 or health.resets > 0)


def rtt_of(health: FlowHealth | None) -> RttSamples | None:
    """The round-trip times of ``health``, when it has at least one sample and they could
    come from sockets: a bucket or a sum no RTT can give (a record from something else
    than capture) makes them unknown, rather than a quantile or a mean that overflows."""
    if health is None or health.rtt is None or health.rtt.samples <= 0:
        return None
    rtt = health.rtt
    if not 0 <= rtt.sum_us <= rtt.samples * _LONGEST_RTT_US:
        return None
    if any(not 0 <= k <= _LAST_BUCKET for k, _ in rtt.buckets):
        return None
    return rtt


def slow(health: FlowHealth | None, slow_ms: float = SLOW_MS) -> bool:
    """The p99 round-trip time is at or above ``slow_ms``; never without RTT samples."""
    rtt = rtt_of(health)
    return rtt is not None and rtt.quantile_us(0.99) >= slow_ms * 1000


def retransmits_known(health: FlowHealth | None) -> bool:
    """Whether ``health`` says how many segments were retransmitted: the wire's 0 is
    also what a report without ``tcp_info`` carries, so it counts only beside RTT."""
    return health is not None and (health.rtt is not None or health.retransmits > 0)


def size(count: int) -> str:
    """Bytes in SI units with three significant digits: ``950 B``, ``1.2 MB``."""
    for scale, unit in _UNITS:
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"


def milliseconds(us: float) -> str:
    """A time in µs as milliseconds, to two significant digits (the RTT buckets are
    within 9 %, more would be noise) but never in exponent form: ``0.42 ms``,
    ``4.2 ms``, ``42 ms``, ``210 ms``, ``1300 ms``."""
    ms = us / 1000
    if ms >= 99.5:
        return f"{float(f'{ms:.2g}'):.0f} ms"
    return f"{ms:.2g} ms"


def _rtt_words(rtt: RttSamples | None) -> str:
    if rtt is None:
        return ""
    p50, p99 = (milliseconds(rtt.quantile_us(q)) for q in (0.5, 0.99))
    return f"RTT p50 {p50}, p99 {p99}"


def describe(health: FlowHealth | None) -> str:
    """``3 failed, 1 reset, 12 opened, 1.2 MB sent, 3.4 MB received, RTT p50 4.2 ms,
    p99 210 ms, 7 retransmits``: failures first, parts that are 0 or unknown left out."""
    if health is None:
        return "no health reported"
    retransmits = health.retransmits
    parts = [
        f"{health.failed} failed" if health.failed else "",
        f"{health.resets} reset{'s' if health.resets != 1 else ''}" if health.resets else "",
        f"{health.opened} opened" if health.opened else "",
        f"{health.closed} closed" if health.closed else "",
        f"{size(health.bytes_sent)} sent" if health.bytes_sent is not None else "",
        f"{size(health.bytes_received)} received" if health.bytes_received is not None else "",
        _rtt_words(rtt_of(health)),
        f"{retransmits} retransmit{'s' if retransmits != 1 else ''}" if retransmits else "",
    ]
    return ", ".join(part for part in parts if part) or "no connections ended or opened"


def rtt_fields(health: FlowHealth | None) -> dict[str, Any]:
    """``rtt_p50_ms``, ``rtt_p99_ms`` and ``rtt_mean_ms`` (to the µs) when ``health`` has
    RTT samples, and ``retransmits`` when it is known; nothing else."""
    fields: dict[str, Any] = {}
    rtt = rtt_of(health)
    if rtt is not None:
        fields["rtt_p50_ms"] = round(rtt.quantile_us(0.5) / 1000, 3)
        fields["rtt_p99_ms"] = round(rtt.quantile_us(0.99) / 1000, 3)
        fields["rtt_mean_ms"] = round(rtt.sum_us / rtt.samples / 1000, 3)
    if health is not None and retransmits_known(health):
        fields["retransmits"] = health.retransmits
    return fields


def health_summary(health: FlowHealth) -> dict[str, Any]:
    """``health`` as a flat JSON object for a search index: the wire's counts, and the
    round-trip times as :func:`rtt_fields` (``rtt_samples`` with them) instead of
    buckets, which an index would flatten into meaningless numbers."""
    summary: dict[str, Any] = msgspec.to_builtins(health)
    rtt = summary.pop("rtt", None)
    if rtt is not None:
        summary["rtt_samples"] = rtt["samples"]
    return {**summary, **rtt_fields(health)}


def health_fields(edge: Edge, slow_ms: float = SLOW_MS) -> dict[str, Any]:
    """``health``, ``health_total`` (as the wire has them), ``failing`` and ``slow``, and
    the :func:`rtt_fields` of ``health`` (lately), for an edge with health, to put in a
    JSON output; nothing for an edge without, which is then written as it always was."""
    if edge.health is None and edge.health_total is None:
        return {}
    return {
        "health": msgspec.to_builtins(edge.health),
        "health_total": msgspec.to_builtins(edge.health_total),
        "failing": failing(edge.health),
        "slow": slow(edge.health, slow_ms),
        **rtt_fields(edge.health),
    }
