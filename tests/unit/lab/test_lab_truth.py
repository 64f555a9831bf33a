"""Ground truth for every scenario of issue #7, derived from the topology alone."""

from __future__ import annotations

import pytest
from helpers.labplans import bundled, plan_of

from lab.errors import TopologyError
from lab.truth import ExpectedEdge, ServerPort, expected_edges, listen_ports


def edges(layout_or_name: object) -> set[tuple[str, str]]:
    layout = bundled(layout_or_name) if isinstance(layout_or_name, str) else layout_or_name
    return {(e.client, e.server) for e in expected_edges(layout).edges}  # type: ignore[arg-type]


def test_the_microservices_shop() -> None:
    shop = "shop/"
    frontend_calls = [
        "adservice",
        "cartservice",
        "checkoutservice",
        "currencyservice",
        "productcatalogservice",
        "recommendationservice",
        "shippingservice",
    ]
    checkout_calls = [
        "cartservice",
        "currencyservice",
        "emailservice",
        "paymentservice",
        "productcatalogservice",
        "shippingservice",
    ]
    expected = {(shop + "frontend", shop + s) for s in frontend_calls}
    expected |= {(shop + "checkoutservice", shop + s) for s in checkout_calls}
    expected |= {
        ("shop/cartservice", "shop/redis-cart"),
        ("shop/loadgenerator", "shop/frontend"),
        ("shop/recommendationservice", "shop/productcatalogservice"),
        ("shop/paymentservice", "external:api.stripe.com"),  # through the ExternalName service
        ("shop/emailservice", "external:smtp.mailgun.org"),
        ("shop/currencyservice", "external:api.exchangerate.host"),
    }
    assert edges("shop") == expected


def test_two_clients_one_server_and_internet_names() -> None:
    assert edges("two-clients") == {
        ("web/client-a", "api/server"),
        ("web/client-b", "api/server"),
        ("web/client-a", "external:api.github.com"),
        ("web/client-b", "external:pypi.org"),
    }


def test_churn_credits_a_reused_ip_to_its_new_holder_after_the_reuse_only() -> None:
    assert edges("churn") == {
        ("shop/frontend", "shop/cartservice"),  # before its only pod goes ...
        ("shop/frontend", "service:shop/cartservice"),  # ... after: a name nobody stands behind
        ("shop/frontend", "shop/emailservice"),
        ("ops/prober", "shop/cartservice"),  # 10.244.0.4 before the churn ...
        ("ops/prober", "shop/emailservice"),  # ... and after, held by the new emailservice pod
    }


def test_churn_at_time_zero_leaves_no_trace_of_the_deleted_pod() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: a, name: c}, {namespace: a, name: old}, "
        "{namespace: a, name: new, ports: [80]}]\n"
        "calls: [{from: a/c, to: 10.244.0.4, port: 80}]\n"
        "churn: [{at: 0, delete: a/old, ip_to: a/new}]"
    )
    assert edges(layout) == {("a/c", "a/new")}


def test_a_service_whose_pods_are_all_gone_is_still_a_name_but_not_a_reason_to_exist() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: a, name: c}, {namespace: a, name: s,"
        " service: {name: s, ports: [80]}}, {namespace: a, name: h, kind: StatefulSet,"
        " service: {name: h, ports: [80], headless: true}}]\n"
        "calls: [{from: a/c, to: s, port: 80}, {from: a/c, to: h, port: 80}]\n"
        "churn: [{at: 10, delete: a/s}, {at: 10, delete: a/h}]"
    )
    # The ClusterIP name still answers (its connections are refused); the headless
    # name answers nothing once no pod is behind it.
    assert edges(layout) == {("a/c", "a/s"), ("a/c", "service:a/s"), ("a/c", "a/h")}
    gone = plan_of(
        "name: t\nworkloads: [{namespace: a, name: c}, {namespace: a, name: s,"
        " service: {name: s, ports: [80]}}]\n"
        "calls: [{from: a/c, to: s, port: 80}]\nchurn: [{at: 0, delete: a/s}]"
    )
    with pytest.raises(TopologyError, match="reaches nothing"):
        expected_edges(gone)


def test_a_long_lived_connection_opened_before_capture() -> None:
    truth = expected_edges(bundled("long-lived"))
    assert {(e.client, e.server) for e in truth.edges} == {
        ("app/api", "data/postgres"),  # the socket shows the cluster IP: the service's workload
        ("app/worker", "app/api"),
        ("app/worker", "ip:198.51.100.80"),  # no DNS answer was seen for it
    }


def test_dns_over_tcp_aaaa_and_ipv6_pods() -> None:
    assert edges("dns-tcp-ipv6") == {
        ("web/client", "api/server"),
        ("web/tcp-resolver", "api/server"),
        ("web/client", "external:cdn.example.com"),
        ("web/client", "external:v6only.example.org"),
    }


def test_a_statefulset_called_by_per_pod_names_and_calling_itself() -> None:
    assert edges("statefulset") == {("app/api", "data/mongodb"), ("data/mongodb", "data/mongodb")}


def test_two_nodes_and_host_network_clients_act_as_their_node() -> None:
    assert edges("two-nodes") == {
        ("web/web", "api/api"),
        ("api/api", "web/web"),
        ("node:node-a", "ops/collector"),
        ("node:node-b", "ops/collector"),
    }


def test_a_service_selecting_two_workloads_gives_an_edge_to_each() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: s, name: page}, {namespace: s, name: reviews-v1}, "
        "{namespace: s, name: reviews-v2}]\n"
        "services: [{namespace: s, name: reviews, ports: [9080],"
        " selects: [reviews-v1, reviews-v2]}]\n"
        "calls: [{from: s/page, to: reviews, port: 9080}]"
    )
    assert edges(layout) == {("s/page", "s/reviews-v1"), ("s/page", "s/reviews-v2")}


def test_addresses_resolve_to_whoever_holds_them() -> None:
    layout = plan_of(
        "name: t\nnodes: [node-a, node-b]\nworkloads: [{namespace: a, name: c}, "
        "{namespace: a, name: s, service: {name: s, ports: [80]}}]\n"
        "calls: [{from: a/c, to: 172.31.250.11, port: 22}, {from: a/c, to: 10.96.1.1, port: 80},"
        " {from: a/c, to: 198.51.100.7, port: 80}, {from: a/c, to: 10-244-1-2.a.pod, port: 80}]"
    )
    assert edges(layout) == {
        ("a/c", "node:node-b"),  # a node's address
        ("a/c", "a/s"),  # the service's cluster IP, and the *.pod name of its pod on node-b
        ("a/c", "ip:198.51.100.7"),  # nobody in the cluster
    }


def test_dns_lookups_over_tcp_may_show_up_as_calls_to_the_dns_server() -> None:
    truth = expected_edges(bundled("two-clients"))
    assert ExpectedEdge("web/client-a", "kube-system/coredns") in truth.tolerated
    assert not truth.edges & truth.tolerated


def test_a_call_that_reaches_nothing_is_a_topology_error() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: a, name: c}]\ncalls: [{from: a/c, to: nope, port: 80}]"
    )
    with pytest.raises(TopologyError, match=r"calls\[0\].to: 'nope'"):
        expected_edges(layout)


def test_truth_as_json_uses_the_lab_run_edge_shape() -> None:
    document = expected_edges(bundled("two-clients")).as_json()
    assert {"client": "web/client-a", "server": "api/server"} in document["edges"]
    assert set(document) == {"edges", "tolerated", "ports"}


def test_pods_listen_on_service_ports_and_on_ports_called_directly() -> None:
    ports = listen_ports(bundled("churn"))
    assert ports["shop/cartservice"] == {7070}
    assert ports["shop/emailservice"] == {5000, 7070}
    assert ports["kube-system/coredns"] == {53}
    assert listen_ports(bundled("shop"))["internet"] == {443, 587}


def test_udp_calls_are_edges_with_their_ports_apart_from_tcp_ports() -> None:
    truth = expected_edges(bundled("udp"))
    client_statsd = ExpectedEdge("web/client", "metrics/statsd")
    tracer_statsd = ExpectedEdge("web/tracer", "metrics/statsd")
    client_time = ExpectedEdge("web/client", "external:time.example.net")
    client_dns = ExpectedEdge("web/client", "kube-system/coredns")
    assert truth.edges == {client_statsd, tracer_statsd, client_time}
    assert truth.tolerated == {client_dns}  # lookups over TCP, if a scan catches one
    assert truth.ports == {
        client_statsd: {ServerPort(9102, "tcp"), ServerPort(8125, "udp")},
        tracer_statsd: {ServerPort(6831, "udp")},
        client_time: {ServerPort(123, "udp")},
    }
    assert truth.allowed_ports[client_dns] == {ServerPort(53, "tcp")}
    assert {
        "client": "web/client",
        "server": "metrics/statsd",
        "ports": [9102],
        "udp_ports": [8125],
    } in truth.as_json()["ports"]


def test_pods_and_the_internet_listen_for_datagrams_on_their_udp_ports_only() -> None:
    layout = bundled("udp")
    assert listen_ports(layout)["metrics/statsd"] == {9102}
    assert listen_ports(layout, "udp")["metrics/statsd"] == {8125, 6831}  # service, pod's IP
    assert listen_ports(layout)["internet"] == set()
    assert listen_ports(layout, "udp")["internet"] == {123}
    assert "web/client" not in {ref for ref, ports in listen_ports(layout, "udp").items() if ports}


def test_a_port_called_over_both_protocols_is_two_ports() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: a, name: c},"
        " {namespace: a, name: s, service: {name: s, ports: [53], udp_ports: [53]}}]\n"
        "calls: [{from: a/c, to: s, port: 53}, {from: a/c, to: s, port: 53, protocol: udp}]"
    )
    truth = expected_edges(layout)
    assert truth.ports == {ExpectedEdge("a/c", "a/s"): {ServerPort(53), ServerPort(53, "udp")}}
