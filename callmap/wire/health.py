"""How a call's connections went, as records carry it: counts, bytes and round-trip times.

:class:`FlowHealth` rides on socket observations and on edges
(docs/wire-contract.md); healths add up, so a stream can sum them per edge
and a consumer can sum them again across announcements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

RTT_BUCKETS_PER_OCTAVE = 4
""":class:`RttSamples` buckets: four per doubling, so a quantile is within 9 %."""


class RttSamples(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Round-trip times of a call's TCP connections: one sample per client socket and
    report, its smoothed RTT (``tcpi_rtt``) at the time.

    ``buckets`` holds ``[k, count]`` pairs, ascending by ``k``: ``count``
    samples in ``[2^(k/4), 2^((k+1)/4))`` µs (a sample under 1 µs counts in
    bucket 0). So samples add up (:meth:`plus`) and quantiles come out of the
    sum (:meth:`quantile_us`).
    """

    samples: int
    sum_us: int
    """The samples' sum: ``sum_us / samples`` is the mean RTT."""
    buckets: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, *rtts_us: int) -> RttSamples:
        """These RTTs (µs) as samples."""
        counts: dict[int, int] = {}
        for rtt in rtts_us:
            k = rtt_bucket(rtt)
            counts[k] = counts.get(k, 0) + 1
        return cls(samples=len(rtts_us), sum_us=sum(rtts_us), buckets=tuple(sorted(counts.items())))

    def plus(self, other: RttSamples) -> RttSamples:
        """Both together."""
        counts = dict(self.buckets)
        for k, count in other.buckets:
            counts[k] = counts.get(k, 0) + count
        return RttSamples(
            samples=self.samples + other.samples,
            sum_us=self.sum_us + other.sum_us,
            buckets=tuple(sorted(counts.items())),
        )

    def quantile_us(self, q: float) -> float:
        """The ``q`` quantile (0 < q <= 1, nearest rank) of the samples, µs: the
        geometric middle of its bucket. 0.0 without samples."""
        total = sum(count for _, count in self.buckets)
        rank, seen = max(1, math.ceil(q * total)), 0
        for k, count in self.buckets:
            seen += count
            if seen >= rank:
                return float(2 ** ((k + 0.5) / RTT_BUCKETS_PER_OCTAVE))
        return 0.0


def rtt_bucket(rtt_us: int) -> int:
    """The :class:`RttSamples` bucket of an RTT in µs."""
    if rtt_us < 1:
        return 0
    k = math.floor(math.log2(rtt_us) * RTT_BUCKETS_PER_OCTAVE)
    # log2 rounds: keep 2^(k/4) <= rtt < 2^((k+1)/4) exact at the edges.
    while 2 ** (k / RTT_BUCKETS_PER_OCTAVE) > rtt_us:
        k -= 1
    while 2 ** ((k + 1) / RTT_BUCKETS_PER_OCTAVE) <= rtt_us:
        k += 1
    return k


class FlowHealth(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """How the connections of one call went.

    The node's connection tracking counts connections and bytes; socket
    tables with ``tcp_info`` (the capture agent's ``--tcp-info``) add
    round-trip times and retransmits of the client's sockets. Counts add up
    (:meth:`plus`); ``bytes_*`` stay None unless the node's conntrack counts
    bytes (``net.netfilter.nf_conntrack_acct = 1``), ``rtt`` None without
    ``tcp_info``.
    """

    opened: int = 0
    """Connections answered (TCP) or first seen (UDP)."""
    closed: int = 0
    """Connections that ended after they were answered (TCP) or timed out (UDP)."""
    failed: int = 0
    """TCP connects never answered: refused (a reset to the SYN) or timed out."""
    resets: int = 0
    """Answered TCP connections that ended with a reset, from either side."""
    bytes_sent: int | None = None
    """Bytes from client to server over the connections that ``closed``."""
    bytes_received: int | None = None
    """Bytes from server to client over the connections that ``closed``."""
    retransmits: int = 0
    """TCP segments the client's sockets retransmitted since their previous report."""
    rtt: RttSamples | None = None
    """Round-trip times of the client's sockets."""

    def plus(self, other: FlowHealth) -> FlowHealth:
        """Both together."""
        rtt = self.rtt if other.rtt is None else other.rtt
        if self.rtt is not None and other.rtt is not None:
            rtt = self.rtt.plus(other.rtt)
        return FlowHealth(
            opened=self.opened + other.opened,
            closed=self.closed + other.closed,
            failed=self.failed + other.failed,
            resets=self.resets + other.resets,
            bytes_sent=_add_known(self.bytes_sent, other.bytes_sent),
            bytes_received=_add_known(self.bytes_received, other.bytes_received),
            retransmits=self.retransmits + other.retransmits,
            rtt=rtt,
        )


def total_health(healths: Iterable[FlowHealth | None]) -> FlowHealth | None:
    """Several healths as one; None when none is known."""
    total: FlowHealth | None = None
    for health in healths:
        if health is not None:
            total = health if total is None else total.plus(health)
    return total


def _add_known(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b
