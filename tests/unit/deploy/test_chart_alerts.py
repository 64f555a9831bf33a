"""The chart's alert rules: they render from the values, read series callmap serves,
agree with the dashboard and the sinks, and fire as meant.

The series a rule reads must be among those `callmap metrics` serves for an
edge with every kind of health; promtool checks the rules and runs them on
made-up series: the failing and the slow call alert, the healthy call does not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from helpers.chartrender import CHART, ROOT, Rendered
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from callmap.config import KafkaSettings
from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.changes import Change
from sinks.health import SLOW_MS
from sinks.maps.exporter import RTT_QUANTILES, ServiceGraphCollector
from sinks.maps.follower import Follower
from sinks.maps.formats.servicegraph import LABELS
from streams.statsfeed import LOST_RECORDS, STATS_AGE


def test_alert_rules_watch_the_figures_the_stream_workers_expose(
    everything_chart: Rendered, default_chart: Rendered
) -> None:
    assert not default_chart.of_kind("PrometheusRule")  # needs the Prometheus Operator
    (rules,) = everything_chart.of_kind("PrometheusRule")
    assert rules["metadata"]["labels"]["release"] == "prometheus"
    groups = {group["name"]: group for group in rules["spec"]["groups"]}
    assert set(groups) == {"callmap-capture", "callmap-service-graph"}
    alerts = {rule["alert"]: rule for rule in groups["callmap-capture"]["rules"]}
    assert set(alerts) == {"CallmapCaptureLostRecords", "CallmapCaptureSilent"}
    lost = alerts["CallmapCaptureLostRecords"]["expr"]
    assert f"delta({LOST_RECORDS}[15m])" in lost and lost.endswith("> 0")
    assert f"({STATS_AGE}) > 600" in alerts["CallmapCaptureSilent"]["expr"]
    summary = alerts["CallmapCaptureLostRecords"]["annotations"]["summary"]
    assert "{{ $labels.node }}" in summary  # Prometheus' template, not Helm's
    graph = {rule["alert"]: rule for rule in groups["callmap-service-graph"]["rules"]}
    assert set(graph) == {
        "CallmapServiceGraphSeriesDropped",
        "CallmapNewExternalCall",
        "CallmapFailingCall",
        "CallmapSlowCall",
    }
    assert "< 7200" in graph["CallmapNewExternalCall"]["expr"]
    failing = graph["CallmapFailingCall"]["expr"]
    assert "increase(callmap_edge_connects_failed_total[30m])" in failing
    assert "increase(callmap_edge_resets_total[30m])" in failing and failing.endswith(") > 20")
    assert graph["CallmapSlowCall"]["expr"].endswith(">= 500 / 1000")  # slowCallMs, in seconds
    assert (graph["CallmapFailingCall"]["for"], graph["CallmapSlowCall"]["for"]) == ("10m", "15m")


def service_graph_rules(chart: Rendered) -> dict[str, dict[str, Any]]:
    (rules,) = chart.of_kind("PrometheusRule")
    (group,) = [g for g in rules["spec"]["groups"] if g["name"] == "callmap-service-graph"]
    return {rule["alert"]: rule for rule in group["rules"]}


def served_series() -> set[str]:
    """The sample names `callmap metrics` serves for an edge with every kind of health."""
    health = FlowHealth(
        opened=3,
        closed=2,
        failed=1,
        resets=1,
        bytes_sent=10,
        bytes_received=20,
        retransmits=1,
        rtt=RttSamples.of(900, 250_000),
    )
    follower = Follower(KafkaSettings())
    web = Endpoint(type="workload", namespace="shop", name="web", kind="Deployment")
    stripe = Endpoint(type="external", dns_name="api.stripe.com")
    edge = Edge(
        edge_id="e1",
        event="new",
        cluster="prod",
        client=web,
        server=stripe,
        first_seen=1.0,
        last_seen=2.0,
        count=1,
        health=health,
        health_total=health,
    )
    follower.book.apply(Change.of(edge))
    registry = CollectorRegistry()
    registry.register(ServiceGraphCollector(follower, 100))
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


SERIES = re.compile(r"\b(?:callmap|traces)_[a-z0-9_]+")


def test_the_service_graph_alerts_read_series_callmap_metrics_serves(
    everything_chart: Rendered,
) -> None:
    served = served_series()
    for name, rule in service_graph_rules(everything_chart).items():
        read = set(SERIES.findall(rule["expr"]))
        assert read and read <= served, (name, read - served)
        # what the annotations name survives the aggregation, and is a label of the series
        kept = set(LABELS)
        if match := re.search(r"by \(([^)]*)\)", rule["expr"]):
            kept = {label.strip() for label in match.group(1).split(",")}
            assert kept <= set(LABELS), name
        annotations = " ".join(rule["annotations"].values())
        assert set(re.findall(r"\$labels\.(\w+)", annotations)) <= kept, name
    rules = service_graph_rules(everything_chart)
    assert 'quantile="0.99"' in rules["CallmapSlowCall"]["expr"] and 0.99 in RTT_QUANTILES
    for call in ("CallmapFailingCall", "CallmapSlowCall"):
        summary = rules[call]["annotations"]["summary"]
        assert "{{ $labels.client }}" in summary and "{{ $labels.server }}" in summary


def dashboard_panel(title: str) -> str:
    """The PromQL of the shipped Grafana dashboard's panel whose title starts with ``title``."""
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "callmap-service-graph.json").read_text())
    (panel,) = [p for p in dashboard["panels"] if p.get("title", "").startswith(title)]
    return " ".join(target["expr"] for target in panel["targets"])


def test_failing_and_slow_calls_alert_on_what_the_dashboard_and_the_sinks_call_so(
    everything_chart: Rendered,
) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["prometheusRule"]
    assert defaults["slowCallMs"] == SLOW_MS  # the sinks' slow rule, list --health's [slow]
    failing_panel = dashboard_panel("Failing calls")
    assert f"[{defaults['failingCallWindow']}]" in failing_panel  # the panel's window
    rules = service_graph_rules(everything_chart)
    queries = {
        "CallmapFailingCall": failing_panel,
        "CallmapSlowCall": dashboard_panel("Slow calls"),
    }
    for alert, query in queries.items():
        alerted = set(SERIES.findall(rules[alert]["expr"]))
        assert alerted and alerted <= set(SERIES.findall(query)), alert


def test_promtool_accepts_every_alert_rule(everything_chart: Rendered, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (make system-deps)"
    (rules,) = everything_chart.of_kind("PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules["spec"]))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "6 rules found" in checked.stdout


SHOP = 'cluster="prod", client_namespace="shop", server_namespace="shop", kind="workload"'


def series(name: str, client: str, server: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {key}="{value}"' for key, value in labels.items())
    return {
        "series": f'{name}{{{SHOP}, client="{client}", server="{server}"{extra}}}',
        "values": values,
    }


def test_promtool_fires_the_call_alerts_for_failing_and_slow_calls_only(
    everything_chart: Rendered, tmp_path: Path
) -> None:
    """With values-everything: more than 20 failures in 30 minutes for 10 minutes; a p99
    round trip of 500 ms or more for 15 minutes. Series one a minute, as scraped."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (make system-deps)"
    (rules,) = everything_chart.of_kind("PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules["spec"]))
    described = service_graph_rules(everything_chart)
    rtt = "callmap_edge_rtt_seconds"
    failed, resets = "callmap_edge_connects_failed_total", "callmap_edge_resets_total"
    inputs = [
        series(rtt, "shop/web", "shop/api", "0.6x45", quantile="0.99"),  # slow
        series(rtt, "shop/web", "shop/api", "0.001x45", quantile="0.5"),
        series(rtt, "shop/web", "shop/cart", "0.4x45", quantile="0.99"),  # under 500 ms
        series(failed, "shop/web", "shop/db", "0+1x45"),  # 2 failures a minute, all told
        series(resets, "shop/web", "shop/db", "0+1x45"),
        series(failed, "shop/web", "shop/cart", "0+0.5x45"),  # 15 in 30 minutes
        series(resets, "shop/web", "shop/cart", "0x45"),
    ]

    def fired(alert: str, client: str, server: str, summary: str) -> dict[str, Any]:
        return {
            "exp_labels": {
                "severity": "warning",
                "cluster": "prod",
                "client": client,
                "server": server,
            },
            "exp_annotations": {
                "summary": summary,
                "description": described[alert]["annotations"]["description"],
            },
        }

    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "CallmapSlowCall", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "CallmapSlowCall",
                        "exp_alerts": [
                            fired(
                                "CallmapSlowCall",
                                "shop/web",
                                "shop/api",
                                "shop/web calling shop/api (cluster prod) is slow: "
                                "p99 round-trip time 600ms",
                            )
                        ],
                    },
                    {"eval_time": "15m", "alertname": "CallmapFailingCall", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "CallmapFailingCall",
                        "exp_alerts": [
                            fired(
                                "CallmapFailingCall",
                                "shop/web",
                                "shop/db",
                                "shop/web calling shop/db (cluster prod): "
                                "60 failed connects and resets in 30m",
                            )
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    checked = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
