"""Topology files: what they accept, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.labplans import SINGLE_CLUSTER, TOPOLOGY_DIR

from lab.errors import TopologyError
from lab.topology import load_topology, parse_topology
from lab.topologyrecords import object_prefix

TOPOLOGIES = [TOPOLOGY_DIR / f"{name}.yaml" for name in SINGLE_CLUSTER]

ISSUE_EXAMPLE = """
name: shop
nodes: [node-a, node-b]
dual_stack: false
workloads:
  - {namespace: shop, name: frontend, kind: Deployment, replicas: 2, labels: {app: frontend},
     service: {name: frontend, ports: [80]}}
  - {namespace: shop, name: cartservice, service: {name: cartservice, ports: [7070]}}
  - {namespace: shop, name: emailservice}
  - {namespace: shop, name: reviews-v1}
  - {namespace: shop, name: reviews-v2}
  - {namespace: data, name: mongodb, kind: StatefulSet, replicas: 2,
     service: {name: mongodb, ports: [27017], headless: true}}
  - {namespace: ops, name: backup, kind: CronJob}
services:
  - {namespace: shop, name: reviews, ports: [9080], selects: [reviews-v1, reviews-v2]}
  - {namespace: shop, name: payments, external_name: pay.example.org}
externals:
  - {name: api.stripe.com, ips: [203.0.113.10], ports: [443]}
  - {name: pay.example.org, ips: [203.0.113.11], ports: [443]}
calls:
  - {from: shop/frontend, to: cartservice.shop, port: 7070, rate: 2}
  - {from: data/mongodb, to: mongodb-1.mongodb.data, port: 27017, long_lived: true,
     before_capture: true}
  - {from: ops/backup, to: api.stripe.com, port: 443}
churn:
  - {at: 20, delete: shop/cartservice, ip_to: shop/emailservice}
"""


def test_the_issues_example_parses_with_every_key_meaning_what_it_says() -> None:
    topology = parse_topology(ISSUE_EXAMPLE)
    assert topology.name == "shop" and topology.cluster == "shop"
    assert topology.nodes == ("node-a", "node-b")
    frontend = topology.workload("shop/frontend")
    assert (frontend.kind, frontend.replicas, dict(frontend.labels)) == (
        "Deployment",
        2,
        {"app": "frontend"},
    )
    assert frontend.service is not None and frontend.service.ports == (80,)
    mongodb = topology.workload("data/mongodb")
    assert mongodb.service is not None and mongodb.service.headless
    reviews, payments = topology.services
    assert reviews.selects == ("shop/reviews-v1", "shop/reviews-v2")
    assert payments.external_name == "pay.example.org"
    assert topology.calls[0].client == "shop/frontend" and topology.calls[0].rate == 2.0
    assert topology.calls[1].long_lived and topology.calls[1].before_capture
    assert topology.churn[0].ip_to == "shop/emailservice"


def test_defaults_one_node_single_stack_labels_from_the_name() -> None:
    topology = parse_topology("name: tiny\nworkloads: [{namespace: a, name: web}]")
    assert topology.nodes == ("node-a",)
    assert not topology.dual_stack
    assert topology.domain == "cluster.local"
    assert dict(topology.workloads[0].labels) == {"app": "web"}


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.stem)
def test_every_bundled_topology_is_valid(path: Path) -> None:
    assert load_topology(path).workloads


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("name: Shop", "name: 'Shop' must be lower-case"),
        ("name: a--b", "name: 'a--b' must be lower-case"),
        ("workloads: [{namespace: a, name: w, replica: 2}]", "workloads[0]: unknown key 'replica'"),
        ("workloads: [{name: w}]", "workloads[0].namespace: missing"),
        ("workloads: [{namespace: a, name: w, kind: Rollout}]", "workloads[0].kind: 'Rollout'"),
        ("workloads: [{namespace: a, name: w, replicas: -1}]", "workloads[0].replicas"),
        ("workloads: [{namespace: a, name: w, kind: Pod, replicas: 2}]", "exactly one replica"),
        ("workloads: [{namespace: a, name: w, node: node-z}]", "workloads[0].node: 'node-z'"),
        (
            "workloads: [{namespace: a, name: w, service: {ports: [0]}}]",
            "workloads[0].service.ports[0]: 0 is not a port",
        ),
        ("workloads: [{namespace: A_b, name: w}]", "workloads[0].namespace: 'A_b' is not a DNS"),
        (
            "workloads: [{namespace: a, name: w}, {namespace: a, name: w}]",
            "workloads: 'a/w' appears twice",
        ),
        (
            "workloads: [{namespace: kube-system, name: coredns}]",
            "the lab's own DNS server",
        ),
        ("services: [{namespace: a, name: s, ports: [80]}]", "exactly one of 'selects'"),
        (
            "services: [{namespace: a, name: s, ports: [80], selects: [nope]}]",
            "no workload 'a/nope'",
        ),
        (
            "services: [{namespace: a, name: s, external_name: x.example.org}]",
            "external_name: 'x.example.org' is not in externals",
        ),
        ("externals: [{name: x.example.org, ips: []}]", "externals[0].ips: needs at least one"),
        ("externals: [{name: x.example.org, ips: [10.244.3.3]}]", "inside the lab's range"),
        ("externals: [{name: x.example.org, ips: [127.0.0.1]}]", "cannot be an external"),
        ("externals: [{name: db.cluster.local, ips: [203.0.113.1]}]", "inside the cluster domain"),
        ("calls: [{from: a/w, to: x, port: 80, rate: 0}]", "calls[0].rate"),
        ("calls: [{from: a/nope, to: x, port: 80}]", "calls[0].from: no workload 'a/nope'"),
        ("calls: [{from: w, to: x, port: 80}]", "calls[0].from: 'w' must be 'namespace/workload'"),
        ("calls: [{from: a/w, to: x, port: 80, before_capture: true}]", "only a long_lived call"),
        ("calls: [{from: a/w, to: x, port: 80, family: '6'}]", "IPv6 calls need dual_stack"),
        ("calls: [{from: a/w, to: x, port: 80, long_lived: yes please}]", "expected true or false"),
        ("churn: [{at: -1, delete: a/w}]", "churn[0].at"),
        ("churn: [{at: 5, delete: a/w, ip_to: a/zz}]", "churn[0].ip_to: no workload 'a/zz'"),
        ("churn: [{at: 5, delete: a/w, pending_for: 2}]", "churn[0].pending_for: needs ip_to"),
        ("churn: [{at: 5, delete: a/w, ip_to: a/w, pending_for: 6}]", "churn[0].pending_for"),
        ("calls: [{from: a/w, to: x, port: 80, protocol: sctp}]", "calls[0].protocol: 'sctp'"),
        (
            "calls: [{from: a/w, to: x, port: 80, protocol: udp, long_lived: true}]",
            "calls[0].long_lived: a udp call is one datagram",
        ),
        (
            "workloads: [{namespace: a, name: w, service: {udp_ports: [70000]}}]",
            "workloads[0].service.udp_ports[0]: 70000 is not a port",
        ),
        (
            "workloads: [{namespace: a, name: w, service: {udp_ports: [53, 53]}}]",
            "workloads[0].service.udp_ports: 53 appears twice",
        ),
        (
            "workloads: [{namespace: a, name: w, service: {name: s}}]",
            "workloads[0].service.ports: needs at least one port (or udp_ports)",
        ),
        (
            "services: [{namespace: a, name: s, udp_ports: [x], selects: [w]}]",
            "services[0].udp_ports[0]: 'x' is not a port",
        ),
        (
            "externals: [{name: x.example.org, ips: [203.0.113.1], udp_ports: 123}]",
            "externals[0].udp_ports: expected a list",
        ),
        ("dns_upstream: maybe", "dns_upstream"),
        ("nodes: []", "nodes: needs at least one node"),
        ("flavour: vanilla", "unknown key 'flavour'"),
    ],
)
def test_a_bad_topology_is_refused_naming_the_key(change: str, message: str) -> None:
    base = {"name": "name: t", "workloads": "workloads: [{namespace: a, name: w}]"}
    key = change.split(":", 1)[0]
    base[key] = change
    text = "\n".join(base.values()) if key in base else "\n".join([*base.values(), change])
    with pytest.raises(TopologyError) as raised:
        parse_topology(text)
    assert message in str(raised.value)


def test_not_yaml_and_not_a_mapping_are_refused() -> None:
    with pytest.raises(TopologyError, match="not valid YAML"):
        parse_topology("name: [unclosed")
    with pytest.raises(TopologyError, match="expected a mapping"):
        parse_topology("- just a list")


def test_call_targets_are_normalised() -> None:
    topology = parse_topology(
        "name: t\nworkloads: [{namespace: a, name: w}]\n"
        "calls: [{from: a/w, to: 'API.Example.COM.', port: 443}]"
    )
    assert topology.calls[0].to == "api.example.com"


def test_lab_prefixes_never_prefix_each_other() -> None:
    assert not object_prefix("shop-x").startswith(object_prefix("shop"))
    assert object_prefix("shop") == "cml-shop--"


def test_udp_ports_and_udp_calls_sit_beside_tcp_ones() -> None:
    topology = parse_topology(
        """
name: t
workloads:
  - {namespace: m, name: statsd, service: {name: statsd, ports: [9102], udp_ports: [8125, 9102]}}
  - {namespace: m, name: relay, service: {udp_ports: [514]}}
  - {namespace: m, name: client}
services:
  - {namespace: m, name: both, ports: [80], udp_ports: [81], selects: [statsd, relay]}
externals:
  - {name: time.example.net, ips: [203.0.113.123], udp_ports: [123]}
calls:
  - {from: m/client, to: statsd, port: 8125, protocol: udp, rate: 5}
  - {from: m/client, to: statsd, port: 9102}
  - {from: m/client, to: statsd, port: 9102, protocol: tcp}
"""
    )
    statsd, relay = topology.workload("m/statsd"), topology.workload("m/relay")
    assert statsd.service is not None and relay.service is not None
    assert (statsd.service.ports, statsd.service.udp_ports) == ((9102,), (8125, 9102))
    assert (relay.service.name, relay.service.ports, relay.service.udp_ports) == (
        "relay",
        (),
        (514,),
    )
    (both,) = topology.services
    assert (both.ports, both.udp_ports) == ((80,), (81,))
    assert topology.externals[0].udp_ports == (123,) and topology.externals[0].ports == ()
    assert [(c.port, c.protocol, c.rate) for c in topology.calls] == [
        (8125, "udp", 5.0),
        (9102, "tcp", 1.0),
        (9102, "tcp", 1.0),
    ]
