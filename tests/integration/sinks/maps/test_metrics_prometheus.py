"""``callmap metrics`` as a process following the edges topic, scraped by a real
Prometheus (Debian's): PromQL returns the corpus's live edges, hostile names and all,
within the series bound, and follows an edge that expires.

What PromQL must return is read off the corpus records directly."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import msgspec
import pytest
from helpers.prometheus import query, running_prometheus, started_exporter, wait_for
from helpers.sinkkafka import create_topics, publish

from callmap.config import Settings
from callmap.wire import EDGES, Edge

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[4]


async def corpus_in_a_cluster(
    settings: Settings, corpus: list[Edge], stem: str
) -> tuple[str, list[Edge]]:
    """The corpus published on the shared edges topic as a new cluster's edges
    (the topic holds other tests' edges too)."""
    cluster = f"{stem}-{uuid.uuid4().hex[:8]}"
    edges = [
        msgspec.structs.replace(e, cluster=cluster, edge_id=f"{cluster}-{e.edge_id}")
        for e in corpus
    ]
    await create_topics(settings, [EDGES])
    await publish(settings, edges)
    return cluster, edges


def node(endpoint: msgspec.Struct) -> str:
    """How the records name a graph node, written out here on its own."""
    kind = endpoint.type  # type: ignore[attr-defined]
    if kind in ("workload", "service"):
        return f"{endpoint.namespace}/{endpoint.name}"  # type: ignore[attr-defined]
    if kind == "external":
        return endpoint.dns_name or endpoint.ip  # type: ignore[attr-defined, no-any-return]
    if kind in ("ip", "node"):
        return f"{kind}:{endpoint.name if kind == 'node' else endpoint.ip}"  # type: ignore[attr-defined]
    return "apiserver"


async def test_prometheus_scrapes_every_live_edge(
    settings: Settings, kafka_bootstrap: str, corpus_edges: list[Edge], tmp_path: Path
) -> None:
    cluster, edges = await corpus_in_a_cluster(settings, corpus_edges, "m")
    live = [e for e in edges if e.event != "expired"]
    pairs = {(node(e.client), node(e.server)) for e in live}
    process, port = started_exporter(kafka_bootstrap, "--cluster", cluster)
    try:
        with running_prometheus([f"127.0.0.1:{port}"], tmp_path) as prometheus:
            series = f'callmap_edge_sightings_total{{cluster="{cluster}"}}'
            samples = await asyncio.to_thread(wait_for, prometheus, series, len(pairs))
            assert {(s["labels"]["client"], s["labels"]["server"]) for s in samples} == pairs
            by_pair = {(s["labels"]["client"], s["labels"]["server"]): s for s in samples}
            for pair in pairs:
                counted = sum(e.count for e in live if (node(e.client), node(e.server)) == pair)
                assert by_pair[pair]["value"] == counted, pair
            # the service graph's series, and the cluster's edge count by kind
            graph = query(prometheus, "sum(traces_service_graph_request_total)")
            assert graph[0]["value"] >= sum(e.count for e in live)
            kinds = query(prometheus, f'callmap_metrics_edges{{cluster="{cluster}"}}')
            assert sum(s["value"] for s in kinds) == len(live)
            # health: counters of each edge's health_total, only for edges that have it
            for family, field in (
                ("callmap_edge_connects_failed_total", "failed"),
                ("callmap_edge_connections_opened_total", "opened"),
                ("callmap_edge_sent_bytes_total", "bytes_sent"),
            ):
                expected: dict[tuple[str, str], float] = {}
                for e in live:
                    value = None if e.health_total is None else getattr(e.health_total, field)
                    if value is not None:
                        pair = (node(e.client), node(e.server))
                        expected[pair] = expected.get(pair, 0) + value
                found = query(prometheus, f'{family}{{cluster="{cluster}"}}')
                got = {(s["labels"]["client"], s["labels"]["server"]): s["value"] for s in found}
                assert got == expected and expected, family
            # round trips: retransmits since new where tcp_info reported, the last window's
            # p50 and p99 in seconds
            retransmits = {
                (node(e.client), node(e.server)): e.health_total.retransmits
                for e in live
                if e.health_total is not None and e.health_total.rtt is not None
            }
            found = query(prometheus, f'callmap_edge_retransmits_total{{cluster="{cluster}"}}')
            got = {(s["labels"]["client"], s["labels"]["server"]): s["value"] for s in found}
            assert got == retransmits and retransmits
            rtts = {
                ((node(e.client), node(e.server)), str(q)): e.health.rtt.quantile_us(q) / 1e6
                for e in live
                if e.health is not None and e.health.rtt is not None
                for q in (0.5, 0.99)
            }
            found = query(prometheus, f'callmap_edge_rtt_seconds{{cluster="{cluster}"}}')
            got = {
                ((s["labels"]["client"], s["labels"]["server"]), s["labels"]["quantile"]): s[
                    "value"
                ]
                for s in found
            }
            assert got == pytest.approx(rtts) and rtts
            # an edge expires: its series goes at the next scrape
            gone = msgspec.structs.replace(
                live[0], event="expired", last_seen=live[0].last_seen + 1
            )
            await publish(settings, [gone])
            left = {(node(e.client), node(e.server)) for e in live[1:]}
            assert left != pairs
            for _ in range(60):
                now = {
                    (s["labels"]["client"], s["labels"]["server"])
                    for s in query(prometheus, series)
                }
                if now == left:
                    break
                await asyncio.sleep(0.5)
            assert now == left
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    assert process.returncode == 0


DASHBOARD = ROOT / "deploy" / "grafana" / "callmap-service-graph.json"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the shipped Grafana dashboard."""
    document = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in document["panels"] for t in p["targets"]]


async def test_every_query_of_the_grafana_dashboard_runs_and_finds_the_map(
    settings: Settings, kafka_bootstrap: str, corpus_edges: list[Edge], tmp_path: Path
) -> None:
    cluster, _ = await corpus_in_a_cluster(settings, corpus_edges, "g")
    process, port = started_exporter(kafka_bootstrap, "--cluster", cluster)
    try:
        with running_prometheus([f"127.0.0.1:{port}"], tmp_path) as prometheus:
            await asyncio.to_thread(wait_for, prometheus, "callmap_edge_sightings_total", 1)
            await asyncio.sleep(3)  # rate() over 5m needs two scrapes
            for title, expr in dashboard_queries():
                promql = expr.replace("$cluster", cluster)
                samples = query(prometheus, promql)  # fails on a query Prometheus rejects
                if title.startswith("New calls"):
                    continue  # the corpus's calls are from 2023: none is new
                assert samples, (title, promql)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)


async def test_the_series_bound_keeps_the_most_sighted_and_counts_the_rest(
    settings: Settings, kafka_bootstrap: str, corpus_edges: list[Edge], tmp_path: Path
) -> None:
    cluster, edges = await corpus_in_a_cluster(settings, corpus_edges, "b")
    process, port = started_exporter(kafka_bootstrap, "--cluster", cluster, "--max-series", "3")
    try:
        with running_prometheus([f"127.0.0.1:{port}"], tmp_path) as prometheus:
            series = f'callmap_edge_sightings_total{{cluster="{cluster}"}}'
            samples = await asyncio.to_thread(wait_for, prometheus, series, 3)
            assert len(samples) == 3
            sums: dict[tuple[str, str], int] = {}
            for e in edges:
                if e.event != "expired":
                    pair = (node(e.client), node(e.server))
                    sums[pair] = sums.get(pair, 0) + e.count
            top = sorted(sums.values(), reverse=True)[:3]
            assert sorted((s["value"] for s in samples), reverse=True) == top
            dropped = query(prometheus, "callmap_metrics_series_dropped")
            assert dropped and dropped[0]["value"] > 0
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
