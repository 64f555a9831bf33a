"""Stage counters: intervals for CaptureStats, totals for Prometheus."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest

from callmap.counters import Counters
from callmap.metrics import METRICS_ADDRESS_VARIABLE, CountersCollector, serve_metrics
from callmap.wire import StageStats


def test_an_interval_reports_only_what_changed_since_the_last() -> None:
    counters = Counters()
    dns = counters.stage("dns")
    dns.seen, dns.emitted = 10, 7
    dns.drop("nxdomain", 3)
    assert counters.interval() == {"dns": StageStats(seen=10, emitted=7, dropped={"nxdomain": 3})}
    dns.seen += 2
    dns.emitted += 2
    assert counters.interval() == {"dns": StageStats(seen=2, emitted=2, dropped={})}
    assert counters.interval() == {"dns": StageStats()}


def test_totals_are_copies_that_later_counting_does_not_change() -> None:
    counters = Counters()
    counters.stage("x").drop("bad", 1)
    totals = counters.totals()
    counters.stage("x").drop("bad", 5)
    assert totals["x"].dropped["bad"] == 1


def test_prometheus_sees_running_totals_and_gauges_at_scrape_time() -> None:
    counters = Counters()
    stage = counters.stage("dns.parse")
    registry = serve_metrics(
        0, CountersCollector("capture", counters, {"outbox_bytes": ("b", lambda: 42.0)})
    )
    stage.seen = 5
    stage.drop("nxdomain", 2)
    text = generate_latest(registry).decode()
    assert 'callmap_capture_seen_total{stage="dns.parse"} 5.0' in text
    assert 'callmap_capture_dropped_total{reason="nxdomain",stage="dns.parse"} 2.0' in text
    assert "callmap_capture_outbox_bytes 42.0" in text


def test_metrics_are_served_only_on_the_address_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(METRICS_ADDRESS_VARIABLE, "127.0.0.2")
    serve_metrics(port, CountersCollector("capture", Counters(), {}))
    with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_health_is_served_beside_the_metrics_and_names_every_problem() -> None:
    problems: list[str] = []
    port = _free_port()
    serve_metrics(port, CountersCollector("capture", Counters(), {}), "127.0.0.1", lambda: problems)
    assert _get(port, "/healthz") == (200, "ok\n")
    problems += ["DNS capture stopped: no capture socket left", "no socket scan finished"]
    assert _get(port, "/healthz") == (503, "\n".join(problems) + "\n")
    status, text = _get(port, "/metrics")
    assert status == 200 and "callmap_capture_seen_total" in text


def test_a_health_check_that_fails_is_reported_unhealthy() -> None:
    def broken() -> list[str]:
        raise RuntimeError("no state yet")

    port = _free_port()
    serve_metrics(port, CountersCollector("capture", Counters(), {}), "127.0.0.1", broken)
    status, text = _get(port, "/healthz")
    assert status == 503 and "no state yet" in text
