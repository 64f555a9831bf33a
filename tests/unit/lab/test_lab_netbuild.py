"""The network as commands and nftables text, checked without root."""

from __future__ import annotations

from helpers.labplans import bundled

from lab.netbuild import build_commands, nft_ruleset, pod_commands


def _joined(commands: list[tuple[str, ...]]) -> list[str]:
    return [" ".join(c) for c in commands]


def test_every_namespace_is_created_with_the_lab_prefix_and_nothing_in_the_root_namespace() -> None:
    layout = bundled("two-nodes")
    commands = build_commands(layout)
    created = [c[3] for c in commands if c[:3] == ("ip", "netns", "add")]
    assert created and all(name.startswith("cml-twonodes--") for name in created)
    for command in commands:
        if command[:3] == ("ip", "link", "add"):  # veths are born inside lab namespaces
            assert command[5].startswith("cml-twonodes--") and command[-1].startswith("cml-")


def test_a_pod_gets_a_routed_slash_32_veth_to_its_node_and_no_bridge() -> None:
    layout = bundled("dns-tcp-ipv6")
    pod = layout.pods[1]
    node = layout.node(pod.node).netns
    lines = _joined(pod_commands(layout, pod))
    v4, v6 = pod.ips
    assert f"ip -n {pod.netns} addr add {v4}/32 dev eth0" in lines
    assert f"ip -n {pod.netns} addr add {v6}/128 dev eth0 nodad" in lines
    assert f"ip -n {pod.netns} route add default via 169.254.1.1 dev eth0" in lines
    assert f"ip -n {pod.netns} route add ::/0 via fe80::1 dev eth0" in lines
    assert f"ip -n {node} route add {v4} dev {pod.veth}" in lines
    assert not any("bridge" in line for line in _joined(build_commands(layout)))


def test_the_fabric_routes_each_nodes_pod_range_to_it_and_externals_to_the_internet() -> None:
    layout = bundled("two-nodes")
    lines = _joined(build_commands(layout))
    fabric = layout.fabric_netns
    assert f"ip -n {fabric} route add 10.244.1.0/24 via 172.31.250.11 dev n1 onlink" in lines
    shop = bundled("shop")
    assert f"ip -n {shop.fabric_netns} route add 203.0.113.10 dev inet0" in _joined(
        build_commands(shop)
    )


def test_host_network_pods_get_no_namespace_of_their_own() -> None:
    layout = bundled("two-nodes")
    agent = next(p for p in layout.pods if p.host_network)
    assert pod_commands(layout, agent) == []


def test_services_are_dnatted_to_every_live_backend_at_random_with_hairpin_masquerade() -> None:
    layout = bundled("two-nodes")
    ruleset = nft_ruleset(layout, layout.pods)
    api = layout.service("api", "api")
    assert api is not None
    assert f"{api.cluster_ips[0]} . tcp . 8080 : goto svc-api-api-tcp-8080-v4" in ruleset
    assert "numgen random mod 2 vmap" in ruleset
    for pod in (p for p in layout.pods if p.ref == "api/api"):
        assert f"dnat ip to {pod.ips[0]}:8080" in ruleset
        assert f"ip saddr {pod.ips[0]} meta mark set meta mark | 0x00004000" in ruleset
    assert "10.96.0.10 . udp . 53" in ruleset and "10.96.0.10 . tcp . 53" in ruleset
    assert "masquerade" in ruleset
    assert ruleset.startswith("add table inet cml-twonodes\ndelete table inet cml-twonodes\n")


def test_ipv6_cluster_ips_dnat_to_ipv6_pod_addresses() -> None:
    layout = bundled("dns-tcp-ipv6")
    server = next(p for p in layout.pods if p.ref == "api/server")
    assert f"dnat ip6 to [{server.ips[1]}]:8080" in nft_ruleset(layout, layout.pods)


def test_a_service_without_live_backends_has_no_translation() -> None:
    layout = bundled("churn")
    after = nft_ruleset(layout, layout.pods_in_phase(1))
    assert "svc-shop-cartservice" not in after
    assert "svc-shop-emailservice-tcp-5000-v4" in after


def test_udp_service_ports_are_dnatted_as_udp_beside_the_tcp_ones() -> None:
    layout = bundled("udp")
    ruleset = nft_ruleset(layout, layout.pods)
    statsd = next(p for p in layout.pods if p.ref == "metrics/statsd")
    assert "10.96.1.1 . udp . 8125 : goto svc-metrics-statsd-udp-8125-v4" in ruleset
    assert "10.96.1.1 . tcp . 9102 : goto svc-metrics-statsd-tcp-9102-v4" in ruleset
    assert f'meta l4proto udp dnat ip to {statsd.ips[0]}:8125 comment "{statsd.key}"' in ruleset
    assert "10.96.1.1 . tcp . 8125" not in ruleset and "10.96.1.1 . udp . 9102" not in ruleset
