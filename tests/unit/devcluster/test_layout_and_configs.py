"""The development cluster's plan and the files its node services read."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from devcluster import addons, configs, install, internet, network
from devcluster.layout import FABRIC, HOST_ADDRESS, INTERNET_ADDRESS, POD_CIDR, plan_cluster


def test_nodes_get_their_own_fabric_address_and_a_small_pod_range() -> None:
    layout = plan_cluster("dev", Path("/c"), node_count=3)
    assert [n.name for n in layout.nodes] == ["node-1", "node-2", "node-3"]
    addresses = [ipaddress.ip_address(n.address) for n in layout.nodes]
    assert all(a in FABRIC for a in addresses) and len(set(addresses)) == 3
    assert HOST_ADDRESS not in {n.address for n in layout.nodes} | {INTERNET_ADDRESS}
    ranges = [n.pod_range for n in layout.nodes]
    assert all(r.subnet_of(POD_CIDR) and r.num_addresses == 32 for r in ranges)  # type: ignore[arg-type]
    assert not any(a.overlaps(b) for i, a in enumerate(ranges) for b in ranges[i + 1 :])
    assert layout.nodes[0].gateway == "10.200.1.1"
    assert len(layout.host_interface) <= 15


@pytest.mark.parametrize(
    ("name", "nodes", "prefix"), [("dev", 0, 27), ("dev", 9, 27), ("bad name", 1, 27), ("d", 1, 30)]
)
def test_impossible_clusters_are_refused(name: str, nodes: int, prefix: int) -> None:
    with pytest.raises(ValueError):
        plan_cluster(name, Path("/c"), nodes, prefix)


def test_the_cni_network_hands_out_the_node_range_behind_a_bridge_without_masquerade() -> None:
    node = plan_cluster("dev", Path("/c"), 2).nodes[1]
    network_config = json.loads(configs.cni_config(node))
    bridge = network_config["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is False and bridge["isGateway"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.200.2.0/27", "gateway": "10.200.2.1"}]]


def test_the_kubelet_allows_cgroup_v1_and_keeps_its_pods_under_its_own_root() -> None:
    node = plan_cluster("dev", Path("/c"), 1).nodes[0]
    config = yaml.safe_load(configs.kubelet_config(node, "/callmap/dev/node-1", "/ca", "/resolv"))
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == "/callmap/dev/node-1"
    assert config["clusterDNS"] == ["10.96.0.10"] and config["resolvConf"] == "/resolv"
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["imageGCHighThresholdPercent"] == 100  # imported images are never collected


def test_kube_proxy_runs_nftables_and_leaves_machine_wide_conntrack_alone() -> None:
    node = plan_cluster("dev", Path("/c"), 1).nodes[0]
    config = yaml.safe_load(configs.kube_proxy_config(node, "/kp"))
    assert config["mode"] == "nftables" and config["clusterCIDR"] == str(POD_CIDR)
    assert config["conntrack"]["maxPerCore"] == 0 and config["hostnameOverride"] == "node-1"


def test_containerd_uses_the_local_sandbox_image_and_cgroupfs() -> None:
    text = configs.containerd_config("localhost/callmap/pause:1")
    assert 'sandbox_image = "localhost/callmap/pause:1"' in text
    assert "SystemdCgroup = false" in text and 'bin_dir = "/usr/lib/cni"' in text


def test_nodes_masquerade_only_what_leaves_the_pod_network() -> None:
    rules = network.node_masquerade_rules()
    assert f"ip saddr {POD_CIDR} ip daddr != {POD_CIDR}" in rules and "masquerade" in rules


def test_coredns_is_kubeadms_addon_forwarding_to_the_nodes_upstream() -> None:
    objects = {o["kind"]: o for o in addons.coredns_objects("img:1")}
    assert objects["Service"]["spec"]["clusterIP"] == "10.96.0.10"
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["dnsPolicy"] == "Default" and pod["containers"][0]["image"] == "img:1"
    corefile = objects["ConfigMap"]["data"]["Corefile"]
    assert "kubernetes cluster.local" in corefile and "forward . /etc/resolv.conf" in corefile


def test_the_internet_serves_every_address_and_port_of_each_name() -> None:
    zone = {"api.stripe.com": ["203.0.113.10"], "cdn.example": ["203.0.113.1", "2001:db8::1"]}
    ports = {"api.stripe.com": [443], "cdn.example": [80, 443]}
    assert internet.hosts_file(zone).splitlines() == [
        "203.0.113.10 api.stripe.com",
        "203.0.113.1 cdn.example",
        "2001:db8::1 cdn.example",
    ]
    served = {(i["ip"], i["port"], i["name"]) for i in internet.listeners(zone, ports)}
    assert len(served) == 5 and ("2001:db8::1", 443, "cdn.example") in served


def test_chart_values_use_the_local_image_and_merge_overrides_key_by_key() -> None:
    values = install.chart_values(
        "localhost/callmap/callmap:abc", "10.77.0.1:9092", "dev", {"image": {"tag": "x"}}
    )
    assert values["image"] == {
        "repository": "localhost/callmap/callmap",
        "tag": "x",
        "pullPolicy": "Never",
    }
    assert values["kafka"]["bootstrapServers"] == "10.77.0.1:9092"
    assert values["sinks"]["sqlite"]["persistence"]["enabled"] is False
