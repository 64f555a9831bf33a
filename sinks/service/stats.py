"""What a sink received, wrote, retried and failed, for logs and Prometheus.

Like :mod:`callmap.counters`, the hot path bumps plain integers and
:class:`SinkCollector` reads them at scrape time. Metrics, labelled by
``sink`` (the kind):

- ``callmap_sink_received_total``: messages read from the edges topic;
- ``callmap_sink_written_total``: records written durably to the target;
- ``callmap_sink_retried_total``: records whose write was tried again after a
  temporary failure (counted once per retry);
- ``callmap_sink_failed_total{reason}``: records that will never be written
  (``undecodable``, ``tombstone_without_key``, ...);
- ``callmap_sink_skipped_total{reason}``: records left out on purpose
  (``already_written`` replays, ``tombstone`` where a target has no deletes);
- ``callmap_sink_buffered`` and ``callmap_sink_target_up`` gauges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(slots=True)
class SinkStats:
    """Running totals of one sink."""

    sink: str
    received: int = 0
    written: int = 0
    retried: int = 0
    commits: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    target_up: bool = True

    def fail(self, reason: str, count: int = 1) -> None:
        self.failed[reason] += count

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    def summary(self) -> str:
        failed = ", ".join(f"{r}={n}" for r, n in sorted(self.failed.items())) or "none"
        skipped = ", ".join(f"{r}={n}" for r, n in sorted(self.skipped.items())) or "none"
        return (
            f"{self.sink}: received={self.received} written={self.written} "
            f"retried={self.retried} commits={self.commits} failed: {failed}; skipped: {skipped}"
        )


class SinkCollector(Collector):
    """Exposes a :class:`SinkStats` and the sink's buffer size."""

    def __init__(self, stats: SinkStats, buffered: Callable[[], int]) -> None:
        self._stats = stats
        self._buffered = buffered

    def collect(self) -> Iterator[Metric]:
        stats, sink = self._stats, [self._stats.sink]
        for name, help_text, value in (
            ("received", "Messages read from the edges topic.", stats.received),
            ("written", "Records written durably to the target.", stats.written),
            (
                "retried",
                "Records whose write was retried after a temporary failure.",
                stats.retried,
            ),
            ("commits", "Offset commits after durable writes.", stats.commits),
        ):
            metric = CounterMetricFamily(f"callmap_sink_{name}", help_text, labels=["sink"])
            metric.add_metric(sink, value)
            yield metric
        for name, help_text, counts in (
            ("failed", "Records that will never be written, by reason.", stats.failed),
            ("skipped", "Records left out on purpose, by reason.", stats.skipped),
        ):
            metric = CounterMetricFamily(
                f"callmap_sink_{name}", help_text, labels=["sink", "reason"]
            )
            for reason, count in sorted(counts.items()):
                metric.add_metric([stats.sink, reason], count)
            yield metric
        buffered = GaugeMetricFamily("callmap_sink_buffered", "Records waiting.", labels=["sink"])
        buffered.add_metric(sink, self._buffered())
        yield buffered
        up = GaugeMetricFamily(
            "callmap_sink_target_up", "1 if the last write worked.", labels=["sink"]
        )
        up.add_metric(sink, 1 if stats.target_up else 0)
        yield up
