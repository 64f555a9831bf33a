"""Prometheus exposition of :class:`~callmap.counters.Counters` and gauges.

The collector reads the counters at scrape time: the hot path never touches
prometheus-client. Metric names are ``callmap_<component>_<what>_total`` with
``stage`` and ``reason`` labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callmap.counters import Counters


class CountersCollector(Collector):
    """Exposes every stage's seen, emitted and dropped totals, plus named gauges."""

    def __init__(
        self,
        component: str,
        counters: Counters,
        gauges: dict[str, tuple[str, Callable[[], float]]] | None = None,
    ) -> None:
        self._prefix = f"callmap_{component}"
        self._counters = counters
        self._gauges = gauges or {}

    def collect(self) -> Iterator[Metric]:
        totals = self._counters.totals()
        seen = CounterMetricFamily(
            f"{self._prefix}_seen", "Items a stage received.", labels=["stage"]
        )
        emitted = CounterMetricFamily(
            f"{self._prefix}_emitted", "Items a stage passed on.", labels=["stage"]
        )
        dropped = CounterMetricFamily(
            f"{self._prefix}_dropped",
            "Items a stage dropped, by reason.",
            labels=["stage", "reason"],
        )
        for stage, counters in sorted(totals.items()):
            seen.add_metric([stage], counters.seen)
            emitted.add_metric([stage], counters.emitted)
            for reason, count in sorted(counters.dropped.items()):
                dropped.add_metric([stage, reason], count)
        events = CounterMetricFamily(
            f"{self._prefix}_events", "Outcomes, by name.", labels=["event"]
        )
        for name, count in sorted(self._counters.events.copy().items()):
            events.add_metric([name], count)
        yield from (seen, emitted, dropped, events)
        for name, (help_text, read) in sorted(self._gauges.items()):
            gauge = GaugeMetricFamily(f"{self._prefix}_{name}", help_text)
            gauge.add_metric([], read())
            yield gauge


def serve_metrics(port: int, collector: Collector, address: str = "0.0.0.0") -> CollectorRegistry:
    """Serve ``collector`` on http://address:port/metrics (port 0: do not serve)."""
    registry = CollectorRegistry()
    registry.register(collector)
    if port:
        start_http_server(port, addr=address, registry=registry)
    return registry
