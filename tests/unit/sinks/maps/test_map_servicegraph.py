"""The map as Prometheus series: one per live edge pair, named as Grafana's service
graph reads them, within a bound."""

from __future__ import annotations

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from callmap.config import KafkaSettings
from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.changes import Change
from sinks.maps.exporter import ServiceGraphCollector
from sinks.maps.follower import Follower
from sinks.maps.formats.servicegraph import service_graph

WEB = Endpoint(type="workload", namespace="shop", name="web", kind="Deployment")
API = Endpoint(type="workload", namespace="shop", name="api", kind="Deployment")
API_BY_SERVICE = Endpoint(
    type="workload", namespace="shop", name="api", kind="Deployment", service="api-svc"
)
STRIPE = Endpoint(type="external", dns_name="api.stripe.com", ip="192.0.2.7")
APISERVER = Endpoint(type="apiserver")


def edge(
    client: Endpoint, server: Endpoint, count: int, *, event: str = "new", cluster: str = "prod"
) -> Edge:
    return Edge(
        edge_id=f"{client.name}-{server.name or server.dns_name or server.type}-{count}",
        event=event,  # type: ignore[arg-type]
        cluster=cluster,
        client=client,
        server=server,
        first_seen=float(count),
        last_seen=float(count) + 10,
        count=count,
    )


def test_each_live_edge_is_a_series_named_by_workload_and_kind() -> None:
    graph = service_graph([edge(WEB, API, 5), edge(API, STRIPE, 3), edge(WEB, APISERVER, 1)])
    assert [s.labels for s in graph.edges] == [
        ("prod", "shop/web", "shop", "shop/api", "shop", "workload"),
        ("prod", "shop/api", "shop", "api.stripe.com", "", "external"),
        ("prod", "shop/web", "shop", "apiserver", "", "apiserver"),
    ]
    assert graph.requests == {
        ("shop/web", "shop/api", ""): 5,
        ("shop/api", "api.stripe.com", "virtual_node"): 3,
        ("shop/web", "apiserver", ""): 1,
    }
    assert graph.counts == {
        ("prod", "workload"): 1,
        ("prod", "external"): 1,
        ("prod", "apiserver"): 1,
    }
    assert graph.dropped == 0


def test_edges_the_labels_cannot_tell_apart_are_one_series() -> None:
    (one,) = service_graph([edge(WEB, API, 5), edge(WEB, API_BY_SERVICE, 2)]).edges
    assert (one.sightings, one.first_seen, one.last_seen) == (7, 2.0, 15.0)


def test_expired_edges_are_not_series() -> None:
    graph = service_graph([edge(WEB, API, 5, event="expired"), edge(API, STRIPE, 1)])
    assert [s.labels[3] for s in graph.edges] == ["api.stripe.com"]
    assert graph.counts == {("prod", "external"): 1}


def test_the_bound_keeps_the_most_sighted_and_counts_the_rest() -> None:
    many = [edge(WEB, Endpoint(type="ip", ip=f"10.0.0.{n}"), n) for n in range(1, 11)]
    graph = service_graph(many, max_series=3)
    assert [s.sightings for s in graph.edges] == [10, 9, 8]
    assert graph.dropped == 7
    assert graph.counts == {("prod", "ip"): 10}


def test_a_map_of_several_clusters_names_each_node_in_its_cluster() -> None:
    east = Endpoint(
        type="workload", namespace="shop", name="web", kind="Deployment", cluster="east"
    )
    west = Endpoint(type="workload", namespace="pay", name="api", kind="Deployment", cluster="west")
    graph = service_graph(
        [edge(east, west, 4, cluster="east"), edge(east, STRIPE, 1, cluster="east")]
    )
    assert [(s.labels[1], s.labels[3]) for s in graph.edges] == [
        ("east/shop/web", "west/pay/api"),
        ("east/shop/web", "api.stripe.com"),
    ]


def test_health_counters_come_from_health_total_summed_over_one_series() -> None:
    direct = msgspec.structs.replace(
        edge(WEB, API, 5), health_total=FlowHealth(opened=10, failed=2, bytes_sent=100)
    )
    by_service = msgspec.structs.replace(
        edge(WEB, API_BY_SERVICE, 2),
        health=FlowHealth(opened=1),  # the window: not what counters count
        health_total=FlowHealth(opened=4, resets=1),
    )
    graph = service_graph([direct, by_service, edge(API, STRIPE, 3)])
    healths = {s.labels[3]: s.health for s in graph.edges}
    assert healths == {
        "shop/api": FlowHealth(opened=14, failed=2, resets=1, bytes_sent=100),
        "api.stripe.com": None,  # no conntrack report: no health series
    }


def test_the_last_windows_health_is_summed_per_series_for_the_rtt_gauges() -> None:
    direct = msgspec.structs.replace(
        edge(WEB, API, 5), health=FlowHealth(rtt=RttSamples.of(1000, 1000))
    )
    by_service = msgspec.structs.replace(
        edge(WEB, API_BY_SERVICE, 2), health=FlowHealth(rtt=RttSamples.of(300_000))
    )
    (one,) = service_graph([direct, by_service]).edges
    assert one.lately == FlowHealth(rtt=RttSamples.of(1000, 1000, 300_000))
    assert one.health is None  # no health_total: no counters


def scrape(*edges: Edge) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What Prometheus would read from the exporter following ``edges``: samples by name."""
    follower = Follower(KafkaSettings())
    for one in edges:
        follower.book.apply(Change.of(one))
    registry = CollectorRegistry()
    registry.register(ServiceGraphCollector(follower, 100))
    text = generate_latest(registry).decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_prometheus_reads_the_last_windows_rtt_quantiles_in_seconds_per_edge() -> None:
    lately = FlowHealth(opened=4, rtt=RttSamples.of(1100, 1100, 1100, 240_000))
    samples = scrape(
        msgspec.structs.replace(edge(WEB, API, 5), health=lately), edge(API, STRIPE, 3)
    )
    rtt = {
        labels["quantile"]: (labels, value) for labels, value in samples["callmap_edge_rtt_seconds"]
    }
    assert set(rtt) == {"0.5", "0.99"}  # and only for the edge that has round trips
    labels, p50 = rtt["0.5"]
    assert (labels["client"], labels["server"], labels["kind"]) == (
        "shop/web",
        "shop/api",
        "workload",
    )
    assert p50 == lately.rtt.quantile_us(0.5) / 1e6  # type: ignore[union-attr]
    assert 0.00099 < p50 < 0.0012 and 0.22 < rtt["0.99"][1] < 0.26  # within the 9 % buckets


def test_prometheus_counts_retransmits_since_new_only_where_tcp_info_reports() -> None:
    with_tcp_info = msgspec.structs.replace(
        edge(WEB, API, 5),
        health_total=FlowHealth(opened=9, retransmits=0, rtt=RttSamples.of(900)),
    )
    conntrack_only = msgspec.structs.replace(
        edge(API, STRIPE, 3), health_total=FlowHealth(opened=9)
    )
    resent = msgspec.structs.replace(
        edge(WEB, APISERVER, 1), health_total=FlowHealth(opened=2, retransmits=7)
    )
    samples = scrape(with_tcp_info, conntrack_only, resent)
    counted = {
        labels["server"]: value for labels, value in samples["callmap_edge_retransmits_total"]
    }
    assert counted == {"shop/api": 0, "apiserver": 7}  # 0 measured is a count; 0 unknown is not
    assert "callmap_edge_rtt_seconds" not in samples  # no window with round trips: no gauge
