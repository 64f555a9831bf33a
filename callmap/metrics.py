"""Prometheus exposition of :class:`~callmap.counters.Counters` and gauges.

The collector reads the counters at scrape time: the hot path never touches
prometheus-client. Metric names are ``callmap_<component>_<what>_total`` with
``stage`` and ``reason`` labels.

Every service serves them on ``--metrics-port`` at the address
``CALLMAP_METRICS_ADDRESS`` names, every address when it is unset. The chart
sets it to the pod's IP: the capture agent runs in the host's network, where
every address would mean every interface of the node.

The same server answers ``/healthz``, which the chart's liveness probes ask:
``200 ok``, or ``503`` and one line per problem when the service's health
check names any (a capture thread that died, a scan that stopped finishing).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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


METRICS_ADDRESS_VARIABLE = "CALLMAP_METRICS_ADDRESS"
"""The address metrics are served on; unset or empty: every address."""


HEALTH_PATH = "/healthz"

Health = Callable[[], list[str]]
"""What is wrong with a service now, one line each; empty when it is healthy."""


def serve_metrics(
    port: int,
    collector: Collector,
    address: str | None = None,
    health: Health | None = None,
) -> CollectorRegistry:
    """Serve ``collector`` on http://address:port/metrics and ``health`` on
    ``/healthz`` (port 0: do not serve); the address defaults to
    ``CALLMAP_METRICS_ADDRESS``, else every address."""
    registry = CollectorRegistry()
    registry.register(collector)
    if port:
        address = address or os.environ.get(METRICS_ADDRESS_VARIABLE) or "0.0.0.0"
        server, _ = start_http_server(port, addr=address, registry=registry)
        server.set_app(_with_health(server.get_app(), health or (lambda: [])))
    return registry


def _with_health(metrics: Any, health: Health) -> Any:
    """The metrics WSGI app, answering :data:`HEALTH_PATH` itself."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEALTH_PATH:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        try:
            problems = health()
        except Exception as exc:  # a broken check must not look healthy
            problems = [f"health check failed: {exc!r}"]
        status = "503 Service Unavailable" if problems else "200 OK"
        body = ("\n".join(problems) if problems else "ok").encode() + b"\n"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    return app
