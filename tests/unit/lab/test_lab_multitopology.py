"""Multi-cluster topologies: split per cluster, ranges per overlap group, calls across."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from lab.dnszone import build_zone
from lab.errors import TopologyError
from lab.multilab import peering_commands
from lab.multitopology import load_multi, parse_multi
from lab.netbuild import nft_ruleset
from lab.topology import parse_topology

BUNDLED = Path(__file__).parents[3] / "lab" / "topologies" / "clusters.yaml"

THREE = """
name: mc
clusters:
  - {name: east, nodes: [node-a, node-b], peers: [west]}
  - {name: west}
  - {name: north, overlap_with: [east]}
workloads:
  - {cluster: east, namespace: shop, name: web, service: {name: web, ports: [80]}}
  - {cluster: east, namespace: shop, name: api, service: {name: api, ports: [8080], export: true}}
  - {cluster: west, namespace: shop, name: api, service: {name: api, ports: [8080], export: true}}
  - {cluster: west, namespace: db, name: pg}
  - {cluster: north, namespace: shop, name: web}
calls:
  - {from: east/shop/web, to: api.shop.svc.clusterset.local, port: 8080}
  - {from: east/shop/web, to: 10.245.0.4, port: 5432}
"""
NORTH_TO_CLUSTERSET = "  - {from: north/shop/web, to: api.shop.svc.clusterset.local, port: 8080}\n"


def document(text: str = THREE) -> dict:
    return yaml.safe_load(text)


def test_each_cluster_becomes_a_lab_of_its_own_named_after_both() -> None:
    multi = parse_multi(document(), "t")
    assert {n: t.name for n, t in multi.members.items()} == {
        "east": "mc-east",
        "west": "mc-west",
        "north": "mc-north",
    }
    assert multi.member("east").nodes == ("node-a", "node-b")
    assert [w.ref for w in multi.member("west").workloads] == ["shop/api", "db/pg"]


def test_overlapping_clusters_share_ranges_and_the_others_get_their_own() -> None:
    plans = parse_multi(document(), "t").plans()
    assert plans["east"].ranges == plans["north"].ranges
    assert plans["west"].ranges != plans["east"].ranges
    east_web = next(p for p in plans["east"].pods if p.ref == "shop/web")
    north_web = next(p for p in plans["north"].pods if p.ref == "shop/web")
    assert east_web.ips == north_web.ips  # the same address names two pods
    west_pods = ipaddress.ip_network("10.245.0.0/16")
    assert all(ipaddress.ip_address(p.ips[0]) in west_pods for p in plans["west"].pods)


def test_a_clusterset_name_goes_to_every_exporter_and_is_imported_by_its_peers() -> None:
    multi = parse_multi(document(THREE), "t")
    cross = {(c.cluster, c.to): c.servers for c in multi.cross_calls}
    assert cross[("east", "api.shop.svc.clusterset.local")] == ("east/shop/api", "west/shop/api")
    plans = multi.plans()
    (imported,) = plans["east"].imports
    api_ips = {
        ip
        for name in ("east", "west")
        for pod in plans[name].pods
        if pod.ref == "shop/api"
        for ip in pod.ips
    }
    assert {ip for _, ip in imported.service.backends} == api_ips
    assert ipaddress.ip_address(imported.ip) in plans["east"].ranges.service_v4
    assert plans["north"].imports == ()  # north reaches neither exporter
    zone = build_zone(plans["east"], plans["east"].pods)
    assert zone.lookup("api.shop.svc.clusterset.local") == (imported.ip,)
    ruleset = nft_ruleset(plans["east"], plans["east"].pods)
    assert all(f"dnat ip to {ip}:8080" in ruleset for ip in api_ips)


def test_a_clusterset_name_exported_where_the_caller_cannot_reach_is_refused() -> None:
    with pytest.raises(TopologyError, match="exported by east, west, which north does not peer"):
        parse_multi(document(THREE + NORTH_TO_CLUSTERSET), "t")


def test_a_peer_pod_ip_is_a_call_to_that_pod_and_it_listens_on_the_port() -> None:
    text = THREE
    multi = parse_multi(document(text), "t")
    (call,) = [c for c in multi.cross_calls if c.to == "10.245.0.4"]
    assert call.servers == ("west/db/pg",)
    assert 5432 in multi.member("west").workload("db/pg").ports
    east_calls = {c.to: c.cross_cluster for c in multi.member("east").calls}
    assert east_calls == {"api.shop.svc.clusterset.local": True, "10.245.0.4": True}
    assert "10.245.0.4" not in multi.plans()["east"].internet_ips  # not the internet's


def test_an_ip_of_a_cluster_that_is_not_a_peer_is_refused() -> None:
    text = THREE + "  - {from: north/shop/web, to: 10.245.0.4, port: 5432}\n"
    with pytest.raises(TopologyError, match="address of west, which north does not peer with"):
        parse_multi(document(text), "t")


def test_a_peer_service_ip_is_refused_with_the_way_out() -> None:
    text = THREE.replace("to: 10.245.0.4", "to: 10.97.1.1")
    with pytest.raises(TopologyError, match="call its clusterset name"):
        parse_multi(document(text), "t")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("{name: north, overlap_with: [east]}", None),
        ("{name: north, overlap_with: [east], peers: [east]}", "cannot be peers"),
        ("{name: north, peers: [south]}", "no cluster 'south'"),
        ("{name: north, overlap_with: [north]}", "names itself"),
    ],
)
def test_peers_and_overlaps_are_checked(change: str, message: str | None) -> None:
    text = THREE.replace("{name: north, overlap_with: [east]}", change)
    if message is None:
        parse_multi(document(text), "t")
        return
    with pytest.raises(TopologyError, match=message):
        parse_multi(document(text), "t")


def test_overlap_is_transitive() -> None:
    text = """
name: o
clusters:
  - {name: a, overlap_with: [b]}
  - {name: b}
  - {name: c, overlap_with: [b], peers: [a]}
"""
    with pytest.raises(TopologyError, match="cannot be peers"):
        parse_multi(document(text), "t")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("workloads", [{"namespace": "a", "name": "b"}], "must be one of the clusters"),
        ("calls", [{"from": "shop/web", "to": "x", "port": 1}], "CLUSTER/namespace/workload"),
        ("stop_mirror", [{"cluster": "nowhere", "at": 1, "for": 2}], "must be one of"),
        ("stop_mirror", [{"cluster": "east", "at": -1, "for": 2}], "seconds"),
    ],
)
def test_bad_entries_are_named(key: str, value: object, message: str) -> None:
    raw = document()
    raw[key] = value
    with pytest.raises(TopologyError, match=message):
        parse_multi(raw, "t")


def test_a_single_cluster_parser_refuses_a_multi_cluster_file() -> None:
    with pytest.raises(TopologyError, match="several clusters"):
        parse_topology(document(), "t")


def test_peered_fabrics_are_linked_and_route_each_other_s_pod_and_service_ranges() -> None:
    text = THREE
    multi = parse_multi(document(text), "t")
    commands = [" ".join(c) for c in peering_commands(multi, multi.plans())]
    east, west = "cml-mc-east--fabric", "cml-mc-west--fabric"
    assert f"ip link add x1 netns {east} type veth peer name x0 netns {west}" in commands
    assert f"ip -n {east} route add 10.245.0.0/16 via 172.31.249.2 dev x1 onlink" in commands
    assert f"ip -n {west} route add 10.244.0.0/16 via 172.31.249.1 dev x0 onlink" in commands
    assert not any("mc-north" in c for c in commands)  # north peers with no one


def test_the_bundled_multi_cluster_topology_is_valid() -> None:
    multi = load_multi(BUNDLED)
    assert [c.name for c in multi.clusters] == ["east", "west", "north"]
    assert multi.stop_mirror[0].cluster == "west"


def test_a_udp_call_stays_in_its_cluster_and_a_clusterset_name_carries_tcp_only() -> None:
    across = THREE.replace("port: 5432}", "port: 5432, protocol: udp}")
    with pytest.raises(TopologyError, match=r"calls\[1\].protocol: a call to another cluster"):
        parse_multi(document(across), "t")
    both = THREE.replace(
        "name: api, ports: [8080], export: true}}\n  - {cluster: west",
        "name: api, ports: [8080], udp_ports: [8125], export: true}}\n  - {cluster: west",
    )
    assert "udp_ports: [8125]" in both
    east = parse_multi(document(both), "t").member("east")
    assert [i.ports for i in east.imports] == [(8080,)]  # its UDP port is not translated
