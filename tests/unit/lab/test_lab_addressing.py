"""The address plan: deterministic, inside the lab's ranges, churn reuses IPs exactly."""

from __future__ import annotations

import ipaddress

from helpers.labplans import bundled, plan_of

from lab.ranges import POD_V4, POD_V6, SERVICE_V4, SERVICE_V6

TWO_NODES = """
name: t
nodes: [node-a, node-b]
dual_stack: true
workloads:
  - {namespace: web, name: web, replicas: 3, service: {name: web, ports: [80]}}
  - {namespace: db, name: pg, kind: StatefulSet, replicas: 2,
     service: {name: pg, ports: [5432], headless: true}}
  - {namespace: ops, name: agent, kind: DaemonSet, host_network: true}
  - {namespace: ops, name: pinned, node: node-b}
"""


def test_the_same_topology_always_gives_the_same_plan() -> None:
    assert plan_of(TWO_NODES) == plan_of(TWO_NODES)


def test_the_dns_server_is_the_first_pod_of_the_first_node_behind_kube_dns() -> None:
    layout = plan_of(TWO_NODES)
    dns = layout.pods[0]
    assert (dns.ref, dns.node, dns.ips) == (
        "kube-system/coredns",
        "node-a",
        ("10.244.0.2", "fd00:244::2"),
    )
    kube_dns = layout.service("kube-system", "kube-dns")
    assert kube_dns is not None and kube_dns.cluster_ips == ("10.96.0.10", "fd00:96::a")
    assert {(p.port, p.protocol) for p in kube_dns.ports} == {(53, "UDP"), (53, "TCP")}


def test_pods_spread_round_robin_and_take_addresses_from_their_nodes_range() -> None:
    layout = plan_of(TWO_NODES)
    web = [p for p in layout.pods if p.ref == "web/web"]
    assert [p.node for p in web] == ["node-a", "node-b", "node-a"]
    for pod in layout.pods:
        if pod.host_network:
            continue
        node = layout.node(pod.node)
        v4, v6 = (ipaddress.ip_address(ip) for ip in pod.ips)
        assert v4 in ipaddress.ip_network(node.pod_cidr_v4) and v4 in POD_V4
        assert v6 in ipaddress.ip_network(node.pod_cidr_v6) and v6 in POD_V6
    every_ip = [ip for p in layout.pods if not p.host_network for ip in p.ips]
    assert len(every_ip) == len(set(every_ip))


def test_pinned_pods_daemonsets_and_host_network() -> None:
    layout = plan_of(TWO_NODES)
    assert [p.node for p in layout.pods if p.ref == "ops/pinned"] == ["node-b"]
    agents = [p for p in layout.pods if p.ref == "ops/agent"]
    assert [(p.node, p.ips) for p in agents] == [
        ("node-a", ("172.31.250.10", "fd00:250::a")),
        ("node-b", ("172.31.250.11", "fd00:250::b")),
    ]
    assert all(p.netns == layout.node(p.node).netns and p.veth is None for p in agents)


def test_pod_names_look_like_their_controllers_and_statefulsets_get_per_pod_names() -> None:
    layout = plan_of(TWO_NODES)
    names = {p.ref: p for p in layout.pods}
    web = names["web/web"].name.split("-")
    assert web[0] == "web" and len(web[1]) == 10 and len(web[2]) == 5
    pg = [p for p in layout.pods if p.ref == "db/pg"]
    assert [(p.name, p.hostname, p.subdomain) for p in pg] == [
        ("pg-0", "pg-0", "pg"),
        ("pg-1", "pg-1", "pg"),
    ]


def test_services_get_cluster_ips_headless_and_external_name_do_not() -> None:
    layout = bundled("shop")
    frontend = layout.service("shop", "frontend")
    stripe = layout.service("shop", "stripe")
    assert frontend is not None and frontend.type == "ClusterIP"
    assert all(ipaddress.ip_address(ip) in SERVICE_V4 for ip in frontend.cluster_ips)
    assert stripe is not None and (stripe.type, stripe.cluster_ips) == ("ExternalName", ())
    pg = plan_of(TWO_NODES).service("db", "pg")
    assert pg is not None and (pg.type, pg.cluster_ips) == ("Headless", ())
    dual = plan_of(TWO_NODES).service("web", "web")
    assert dual is not None and ipaddress.ip_address(dual.cluster_ips[1]) in SERVICE_V6


def test_namespace_names_carry_the_lab_prefix() -> None:
    layout = plan_of(TWO_NODES)
    names = [layout.fabric_netns, layout.internet_netns, *(n.netns for n in layout.nodes)]
    names += [p.netns for p in layout.pods]
    assert all(name.startswith("cml-t--") for name in names)


def test_churn_gives_the_victims_exact_addresses_to_a_new_pod_of_the_other_workload() -> None:
    layout = bundled("churn")
    (step,) = layout.churn
    assert step.victim.ref == "shop/cartservice"
    assert step.replacement is not None and step.replacement.ref == "shop/emailservice"
    assert step.replacement.ips == step.victim.ips and step.replacement.node == step.victim.node
    assert step.replacement.name not in {p.name for p in layout.pods}
    after = {p.key for p in layout.pods_in_phase(1)}
    assert step.victim.key not in after and step.replacement.key in after


def test_internet_holds_the_externals_and_called_addresses_outside_the_lab() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: a, name: w}]\n"
        "externals: [{name: x.example.org, ips: [203.0.113.1, '2001:db8::1']}]\n"
        "calls: [{from: a/w, to: 198.51.100.9, port: 80}, {from: a/w, to: x.example.org, port: 1}]"
    )
    assert layout.internet_ips == ("203.0.113.1", "2001:db8::1", "198.51.100.9")
