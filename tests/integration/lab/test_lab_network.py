"""A running lab, checked from inside its pods: DNS, DNAT, routing across nodes, files.

One two-node, dual-stack lab is brought up for the module (``conftest.py``);
every test looks at it the way a pod or an operator would.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.labfixtures import in_netns, python_in

from lab.runtime import call_report, nft_list

pytestmark = pytest.mark.netns

DNS = "10.96.0.10"


def _query(netns: str, name: str, qtype: str = "A", tcp: bool = False) -> dict[str, object]:
    """Ask the lab's DNS server directly (dnspython, no EDNS) from inside ``netns``."""
    code = f"""
import json, dns.message, dns.query, dns.flags, dns.rcode
q = dns.message.make_query({name!r}, {qtype!r})
r = dns.query.{"tcp" if tcp else "udp"}(q, {DNS!r}, timeout=3)
print(json.dumps({{"rcode": dns.rcode.to_text(r.rcode()), "tc": bool(r.flags & dns.flags.TC),
    "answers": sorted(i.to_text() for rrset in r.answer for i in rrset)}}))
"""
    return json.loads(python_in(netns, code))  # type: ignore[no-any-return]


def _getent(netns: str, database: str, name: str) -> list[str]:
    result = in_netns(netns, "getent", database, name)
    return sorted({line.split()[0] for line in result.stdout.splitlines()})


def test_the_lab_comes_up_quickly(network_lab) -> None:  # type: ignore[no-untyped-def]
    assert network_lab.seconds_to_ready < 60


def test_service_names_resolve_through_the_pods_resolver_in_both_families(network_lab) -> None:  # type: ignore[no-untyped-def]
    client = network_lab.pod_netns("web/client")[0]
    assert len(_getent(client, "ahostsv4", "server.api")) == 1
    v6 = _getent(client, "ahostsv6", "server.api")
    assert len(v6) == 1 and v6[0].startswith("fd00:96::")


def test_headless_per_pod_names_resolve_to_that_pod(network_lab) -> None:  # type: ignore[no-untyped-def]
    client = network_lab.pod_netns("web/client")[0]
    db1 = next(p for p in network_lab.state.pods if p.name == "db-1")
    assert _getent(client, "ahostsv4", "db-1.db.data") == [db1.ips[0]]
    assert _getent(client, "ahostsv6", "db-1.db.data.svc.cluster.local") == [db1.ips[1]]


def test_external_name_services_are_cnames_to_the_internet(network_lab) -> None:  # type: ignore[no-untyped-def]
    client = network_lab.pod_netns("web/client")[0]
    answer = _query(client, "pay.web.svc.cluster.local")
    assert answer["rcode"] == "NOERROR"
    assert answer["answers"] == ["203.0.113.10", "api.stripe.com."]
    assert _getent(client, "ahostsv6", "api.stripe.com") == ["2001:db8:10::10"]


def test_search_path_suffixes_get_nxdomain_and_the_pods_really_ask_them(network_lab) -> None:  # type: ignore[no-untyped-def]
    client = network_lab.pod_netns("web/client")[0]
    assert _query(client, "server.api.web.svc.cluster.local")["rcode"] == "NXDOMAIN"
    assert _query(client, "nothing.example.net")["rcode"] == "NXDOMAIN"
    log = Path(network_lab.state.dns.log).read_text()
    assert "config server.api.web.svc.cluster.local is NXDOMAIN" in log


def test_resolv_conf_has_the_kubernetes_search_path_and_ndots(network_lab) -> None:  # type: ignore[no-untyped-def]
    client = network_lab.pod_netns("web/client")[0]
    text = in_netns(client, "cat", "/etc/resolv.conf").stdout
    assert "search web.svc.cluster.local svc.cluster.local cluster.local" in text
    assert f"nameserver {DNS}" in text and "options ndots:5" in text


def test_an_answer_too_big_for_udp_is_truncated_and_complete_over_tcp(network_lab) -> None:  # type: ignore[no-untyped-def]
    client = network_lab.pod_netns("web/client")[0]
    udp = _query(client, "big.example.com")
    assert udp["tc"] is True
    tcp = _query(client, "big.example.com", tcp=True)
    assert tcp["tc"] is False and len(tcp["answers"]) == 40  # type: ignore[arg-type]
    assert len(_getent(client, "ahostsv4", "big.example.com")) == 40  # glibc retried over TCP


def test_a_cluster_ip_connection_is_dnatted_to_every_backend(network_lab) -> None:  # type: ignore[no-untyped-def]
    client = network_lab.pod_netns("web/client")[0]
    code = """
import socket
seen = set()
for _ in range(30):
    with socket.create_connection(("server.api", 8080), timeout=3) as s:
        s.sendall(b"ping test\\n")
        seen.add(s.makefile().readline().split()[1])
print("\\n".join(sorted(seen)))
"""
    backends = python_in(client, code).split()
    servers = sorted(f"api/{p.name}" for p in network_lab.state.pods if p.workload == "api/server")
    assert backends == servers


def test_calls_cross_nodes_and_every_call_succeeds(network_lab) -> None:  # type: ignore[no-untyped-def]
    state = network_lab.state
    nodes = {p.workload: p.node for p in state.pods}
    assert nodes["web/client"] != nodes["api/server"]
    reports = {r["pod"]: r for r in call_report(state)}
    for pod in state.live_pods():
        report = reports.get(f"{pod.namespace}/{pod.name}")
        if report is None:
            continue
        assert report["listening"], report
        for call in report["calls"]:
            assert call["ok"] >= 1, (pod.name, call)


def test_host_network_pods_call_from_their_nodes_address(network_lab) -> None:  # type: ignore[no-untyped-def]
    agents = [p for p in network_lab.state.pods if p.workload == "ops/agent"]
    assert {p.netns for p in agents} == {n.netns for n in network_lab.state.nodes}
    reports = {r["pod"]: r for r in call_report(network_lab.state)}
    assert all(reports[f"ops/{p.name}"]["calls"][0]["ok"] >= 1 for p in agents)


def test_each_node_has_the_nft_table_and_no_pod_has_one(network_lab) -> None:  # type: ignore[no-untyped-def]
    state = network_lab.state
    for node in state.nodes:
        assert f"table inet {state.nft_table}" in nft_list(node.netns)
    assert nft_list(network_lab.pod_netns("web/client")[0]).strip() == ""


def test_the_inventory_lists_every_pod_service_and_node(network_lab) -> None:  # type: ignore[no-untyped-def]
    state = network_lab.state
    document = yaml.safe_load(Path(state.inventory).read_text())
    assert document["cluster"] == state.cluster
    assert {p["name"] for p in document["pods"]} == {p.name for p in state.pods}
    assert {n["name"] for n in document["nodes"]} == {"node-a", "node-b"}
    pay = next(s for s in document["services"] if s["name"] == "pay")
    assert pay["type"] == "ExternalName"


def test_the_state_file_says_where_to_capture(network_lab) -> None:  # type: ignore[no-untyped-def]
    document = json.loads((network_lab.state_dir / "lab.json").read_text())
    assert [n["name"] for n in document["nodes"]] == ["node-a", "node-b"]
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for node in document["nodes"]:
        assert node["netns"] in existing
        assert all(netns in existing for netns in node["pod_netns"])
    assert document["dns"]["service_ips"] == [DNS, "fd00:96::a"]
    assert all(p["pid"] > 0 for p in document["processes"])
