"""The global truths of a multi-cluster lab: every cluster's, named with its cluster."""

from __future__ import annotations

import yaml

from callmap.wire import Endpoint
from lab.clustertruth import CallRecord, TrueEdge
from lab.compare import endpoint_text
from lab.inventory import PodLife
from lab.multitopology import parse_multi
from lab.multitruth import global_call_truth, global_calls, global_truth
from lab.truth import ExpectedEdge, prefixed

MESH = """
name: m
clusters:
  - {name: east, peers: [west]}
  - {name: west}
  - {name: north, overlap_with: [east]}
workloads:
  - {cluster: east, namespace: shop, name: web, service: {name: web, ports: [80]}}
  - {cluster: east, namespace: shop, name: api, service: {name: api, ports: [8080], export: true}}
  - {cluster: west, namespace: shop, name: api, service: {name: api, ports: [8080], export: true}}
  - {cluster: north, namespace: shop, name: web}
  - {cluster: north, namespace: shop, name: api, service: {name: api, ports: [8080]}}
calls:
  - {from: east/shop/web, to: api.shop.svc.clusterset.local, port: 8080}
  - {from: north/shop/web, to: api, port: 8080}
"""


def test_names_carry_their_cluster_but_externals_and_bare_addresses_do_not() -> None:
    assert prefixed("shop/web", "east") == "east/shop/web"
    assert prefixed("node:node-a", "east") == "node:east/node-a"
    assert prefixed("service:shop/api", "east") == "service:east/shop/api"
    assert prefixed("apiserver", "east") == "apiserver:east"
    assert prefixed("external:api.stripe.com", "east") == "external:api.stripe.com"
    assert prefixed("ip:10.0.0.1", "east") == "ip:10.0.0.1"


def test_a_global_edge_is_named_as_the_global_truth_names_it() -> None:
    placed = Endpoint(type="workload", namespace="shop", name="web", cluster="east")
    assert endpoint_text(placed) == "east/shop/web"
    assert endpoint_text(Endpoint(type="workload", namespace="shop", name="web")) == "shop/web"
    outside = Endpoint(type="external", dns_name="example.com")
    assert endpoint_text(outside) == "external:example.com"


def test_the_plans_truth_joins_every_cluster_and_the_calls_between_them() -> None:
    multi = parse_multi(yaml.safe_load(MESH), "t")
    truth = global_truth(multi, multi.plans())
    assert truth.edges == {
        ExpectedEdge("east/shop/web", "east/shop/api"),
        ExpectedEdge("east/shop/web", "west/shop/api"),
        ExpectedEdge("north/shop/web", "north/shop/api"),
    }
    # asking the DNS server for a name is tolerated, in the caller's own cluster
    assert ExpectedEdge("east/shop/web", "east/kube-system/coredns") in truth.tolerated


def _record(pod: str, to: str, answer: str | None, t: float = 100.0) -> CallRecord:
    return CallRecord(t=t, pod=pod, to=to, addr="10.96.200.1", port=8080, ok=True, peer=answer)


def test_the_callers_truth_names_the_pod_that_answered_in_whichever_cluster() -> None:
    multi = parse_multi(yaml.safe_load(MESH), "t")
    plans = multi.plans()
    pods = {c: {p.ref: p for p in plans[c].pods} for c in plans}
    lives = {c: [PodLife(p, created=1.0) for p in plans[c].pods] for c in plans}
    web = pods["east"]["shop/web"].key
    west_api, east_api = pods["west"]["shop/api"].key, pods["east"]["shop/api"].key
    name = "api.shop.svc.clusterset.local"
    records = {
        "east": [
            _record(web, name, f"pong {west_api}"),
            _record(web, name, f"pong {west_api}", t=120.0),
            _record(web, name, None),  # unanswered: no edge
        ],
        "north": [],
        "west": [],
    }
    truth = global_call_truth(multi, plans, lives, records, capture_started=50.0)
    assert truth.edges == {TrueEdge("east/shop/web", "west/shop/api", 8080)}
    assert truth.calls == 3
    records["east"].append(_record(web, name, f"pong {east_api}", t=10.0))  # before capture
    later = global_calls(multi, plans, lives, records, capture_started=50.0)
    assert TrueEdge("east/shop/web", "east/shop/api", 8080) in later.truth.tolerated
    assert later.last[ExpectedEdge("east/shop/web", "west/shop/api")] == 120.0
