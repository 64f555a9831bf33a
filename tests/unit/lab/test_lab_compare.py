"""The map against the truth: pairs as before, ports when the truth knows them, a scope."""

from __future__ import annotations

from helpers.labplans import plan_of

from callmap.wire import Edge, Endpoint
from lab.clusterrun import lab_scope
from lab.clustertruth import ClusterTruth, TrueEdge
from lab.compare import compare, compare_with_truth
from lab.truth import ExpectedEdge, ServerPort, Truth


def tcp(*ports: int) -> frozenset[ServerPort]:
    return frozenset(ServerPort(p) for p in ports)


def udp(*ports: int) -> frozenset[ServerPort]:
    return frozenset(ServerPort(p, "udp") for p in ports)


def _edge(
    client: str,
    server: str,
    ports: tuple[int, ...],
    event: str = "new",
    udp_ports: tuple[int, ...] = (),
) -> Edge:
    namespace, _, name = client.partition("/")
    server_endpoint = (
        Endpoint(type="external", dns_name=server.removeprefix("external:"))
        if server.startswith("external:")
        else Endpoint(type="workload", namespace=server.split("/")[0], name=server.split("/")[1])
    )
    return Edge(
        edge_id=f"{client}>{server}",
        event=event,  # type: ignore[arg-type]
        cluster="c",
        client=Endpoint(type="workload", namespace=namespace, name=name),
        server=server_endpoint,
        ports=ports,
        udp_ports=udp_ports,
        first_seen=1.0,
        last_seen=2.0,
    )


FRONT_CART = ExpectedEdge("shop/frontend", "shop/cart")
FRONT_DNS = ExpectedEdge("shop/frontend", "kube-system/coredns")
TRUTH = Truth(frozenset({FRONT_CART}), frozenset({FRONT_DNS}))


def test_without_ports_the_comparison_and_its_report_are_as_before() -> None:
    result = compare(TRUTH, [_edge("shop/frontend", "shop/cart", (9999,))])
    assert result.perfect and result.missing_ports == frozenset()
    assert set(result.as_json()) == {
        "precision",
        "recall",
        "missing",
        "unexpected",
        "expected",
        "observed",
    }


def test_ports_the_truth_knows_must_show_and_no_others() -> None:
    expected = {FRONT_CART: tcp(7070, 7071)}
    allowed = {FRONT_CART: tcp(7070, 7071, 7072), FRONT_DNS: tcp(53)}
    edges = [
        _edge("shop/frontend", "shop/cart", (7070, 7072, 8080)),
        _edge("shop/frontend", "kube-system/coredns", (53,)),
    ]
    result = compare(TRUTH, edges, expected, allowed)
    assert result.missing_ports == {(FRONT_CART, ServerPort(7071))}
    assert result.unexpected_ports == {(FRONT_CART, ServerPort(8080))}
    assert not result.perfect and not result.missing and not result.unexpected
    ports = result.as_json()["ports"]
    assert ports["missing"] == [
        {"client": "shop/frontend", "server": "shop/cart", "port": 7071, "protocol": "tcp"}
    ]
    assert ports["expected"] == [
        {"client": "shop/frontend", "server": "shop/cart", "ports": [7070, 7071], "udp_ports": []}
    ]
    assert "missing port:    shop/frontend -> shop/cart port 7071/tcp" in result.as_text()


def test_a_scope_sets_aside_what_is_not_the_labs_business() -> None:
    edges = [
        _edge("shop/frontend", "shop/cart", (7070,)),
        _edge("kube-system/coredns", "external:upstream.invalid", (53,)),
        _edge("shop/frontend", "shop/old", (1,), event="expired"),
    ]
    result = compare(
        TRUTH,
        edges,
        {FRONT_CART: tcp(7070)},
        scope=lambda e: e.client.startswith("shop/"),
    )
    assert result.perfect
    assert result.ignored == {ExpectedEdge("kube-system/coredns", "external:upstream.invalid")}
    assert result.as_json()["ignored"] == [
        {"client": "kube-system/coredns", "server": "external:upstream.invalid"}
    ]


def test_the_cluster_truth_compares_pairs_then_ports_within_the_labs_scope() -> None:
    layout = plan_of(
        "name: s\nworkloads: [{namespace: shop, name: frontend}, {namespace: shop, name: cart}]\n"
        "externals: [{name: api.example.com, ips: [203.0.113.5], ports: [443]}]\n"
    )
    truth = ClusterTruth(
        edges=frozenset(
            {
                TrueEdge("shop/frontend", "shop/cart", 7070),
                TrueEdge("shop/frontend", "shop/cart", 7071),
            }
        ),
        tolerated=frozenset(
            {
                TrueEdge("shop/frontend", "kube-system/coredns", 53),
                TrueEdge("shop/frontend", "shop/cart", 7072),  # a failed call's port
            }
        ),
    )
    edges = [
        _edge("shop/frontend", "shop/cart", (7070, 7071, 7072)),
        _edge("shop/frontend", "kube-system/coredns", (53,)),
        _edge("kube-system/coredns", "external:upstream.invalid", (53,)),  # the cluster's own
    ]
    scope = lab_scope(layout)
    result = compare_with_truth(truth, edges, scope)
    assert result.perfect, result.as_text()
    assert result.ignored == {ExpectedEdge("kube-system/coredns", "external:upstream.invalid")}
    assert result.tolerated == {FRONT_DNS}
    assert scope(ExpectedEdge("node:node-1", "external:api.example.com"))
    # a DNS server's upstream lookup of a topology name, shown as its call, counts (and is wrong)
    assert scope(ExpectedEdge("kube-system/coredns", "external:api.example.com"))
    assert scope(ExpectedEdge("ip:10.77.0.1", "shop/cart"))  # whoever calls the lab's pods
    assert not scope(ExpectedEdge("node:node-1", "apiserver"))
    short = compare_with_truth(truth, [_edge("shop/frontend", "shop/cart", (7070,))], scope)
    assert short.missing_ports == {(ExpectedEdge("shop/frontend", "shop/cart"), ServerPort(7071))}
    assert short.perfect  # a port no scan caught is reported, not held against the map


# --- UDP ports: an edge's udp_ports, never its ports -------------------------------------

STATSD = ExpectedEdge("shop/frontend", "shop/statsd")
UDP_TRUTH = Truth(
    frozenset({FRONT_CART, STATSD}),
    frozenset({FRONT_DNS}),
    ports={FRONT_CART: tcp(7070) | udp(8125), STATSD: udp(8125)},
    allowed_ports={FRONT_CART: tcp(7070) | udp(8125), STATSD: udp(8125), FRONT_DNS: tcp(53)},
)


def test_an_edge_with_tcp_and_udp_ports_matches_only_with_each_in_its_own_list() -> None:
    right = [
        _edge("shop/frontend", "shop/cart", (7070,), udp_ports=(8125,)),
        _edge("shop/frontend", "shop/statsd", (), udp_ports=(8125,)),
        _edge("shop/frontend", "kube-system/coredns", (53,)),
    ]
    result = compare(UDP_TRUTH, right)  # the truth's own ports
    assert result.perfect and result.complete, result.as_text()
    assert result.as_json()["ports"]["observed"] == [
        {
            "client": "shop/frontend",
            "server": "kube-system/coredns",
            "ports": [53],
            "udp_ports": [],
        },
        {"client": "shop/frontend", "server": "shop/cart", "ports": [7070], "udp_ports": [8125]},
        {"client": "shop/frontend", "server": "shop/statsd", "ports": [], "udp_ports": [8125]},
    ]


def test_a_udp_port_shown_as_tcp_is_unexpected_and_missing() -> None:
    swapped = [
        _edge("shop/frontend", "shop/cart", (7070,), udp_ports=(8125,)),
        _edge("shop/frontend", "shop/statsd", (8125,)),
    ]
    result = compare(UDP_TRUTH, swapped)
    assert result.unexpected_ports == {(STATSD, ServerPort(8125, "tcp"))}
    assert result.missing_ports == {(STATSD, ServerPort(8125, "udp"))}
    assert not result.perfect and not result.complete
    assert result.as_json()["ports"]["unexpected"] == [
        {"client": "shop/frontend", "server": "shop/statsd", "port": 8125, "protocol": "tcp"}
    ]
    assert "unexpected port: shop/frontend -> shop/statsd port 8125/tcp" in result.as_text()


def test_a_missing_udp_port_spoils_the_match_where_a_missing_tcp_port_does_not() -> None:
    no_udp = [
        _edge("shop/frontend", "shop/cart", (7070,)),
        _edge("shop/frontend", "shop/statsd", (), udp_ports=(8125,)),
    ]
    result = compare(UDP_TRUTH, no_udp)
    assert result.missing_ports == {(FRONT_CART, ServerPort(8125, "udp"))}
    assert not result.missing and not result.unexpected_ports
    assert not result.complete and not result.perfect
    no_tcp = [
        _edge("shop/frontend", "shop/cart", (), udp_ports=(8125,)),
        _edge("shop/frontend", "shop/statsd", (), udp_ports=(8125,)),
    ]
    result = compare(UDP_TRUTH, no_tcp)
    assert result.missing_ports == {(FRONT_CART, ServerPort(7070))}
    assert result.complete and result.perfect


def test_the_cluster_truth_keeps_a_udp_call_apart_from_a_tcp_call_on_the_same_port() -> None:
    truth = ClusterTruth(
        edges=frozenset(
            {
                TrueEdge("shop/frontend", "shop/cart", 8125),
                TrueEdge("shop/frontend", "shop/cart", 8125, "udp"),
            }
        ),
        tolerated=frozenset(),
    )
    both = [_edge("shop/frontend", "shop/cart", (8125,), udp_ports=(8125,))]
    assert compare_with_truth(truth, both).perfect
    tcp_only = compare_with_truth(truth, [_edge("shop/frontend", "shop/cart", (8125,))])
    assert tcp_only.missing_ports == {(FRONT_CART, ServerPort(8125, "udp"))}
    assert not tcp_only.perfect
