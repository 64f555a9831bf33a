"""UDP ports in the map's text outputs: TCP ports as they always were, UDP ports
after them as ``53/udp``; JSON keeps ``ports`` the TCP ports and adds ``udp_ports``."""

from __future__ import annotations

import csv
import io
import json

import msgspec
from helpers.mapedges import edge, workload

from callmap.wire import Edge
from sinks.maps.formats.dot import render_dot
from sinks.maps.formats.listing import render_json
from sinks.maps.formats.tabular import edges_csv
from sinks.maps.formats.webgraph import edge_json
from sinks.maps.questions import callees

WEB, DNS, API = workload("web"), workload("coredns", "kube-system"), workload("api")
UDP_ONLY = msgspec.structs.replace(edge(WEB, DNS), ports=(), udp_ports=(53,))
MIXED = msgspec.structs.replace(edge(WEB, API), ports=(443, 8080), udp_ports=(53, 5353))
TCP_ONLY = edge(API, DNS)


def csv_ports(edges: list[Edge]) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(edges_csv(edges)))
    return {row["edge_id"]: row["ports"] for row in rows}


def test_csv_writes_udp_ports_after_the_tcp_ones() -> None:
    assert csv_ports([UDP_ONLY, MIXED, TCP_ONLY]) == {
        "web->coredns": "53/udp",
        "web->api": "443 8080 53/udp 5353/udp",
        "api->coredns": "8080",
    }


def test_dot_labels_and_tooltips_name_udp_ports() -> None:
    lines = render_dot([UDP_ONLY, MIXED, TCP_ONLY]).splitlines()
    (udp,) = [line for line in lines if 'tooltip="web -> coredns' in line]
    (mixed,) = [line for line in lines if 'tooltip="web -> api' in line]
    (tcp,) = [line for line in lines if 'tooltip="api -> coredns' in line]
    assert "ports: 53/udp" in udp and udp.endswith('label="53/udp"];')
    assert "ports: 443, 8080, 53/udp, 5353/udp" in mixed
    assert mixed.endswith('label="443, 8080, 53/udp, 5353/udp"];')
    assert "ports: 8080" in tcp and tcp.endswith('label="8080"];')


def test_list_json_adds_udp_ports_only_where_there_are_some() -> None:
    (client,) = [c for c in json.loads(render_json([UDP_ONLY, MIXED])) if c["client"]]
    calls = {call["edge_id"]: call for call in client["calls"]}
    assert (calls["web->coredns"]["ports"], calls["web->coredns"]["udp_ports"]) == ([], [53])
    assert (calls["web->api"]["ports"], calls["web->api"]["udp_ports"]) == ([443, 8080], [53, 5353])
    assert list(calls["web->api"])[list(calls["web->api"]).index("ports") + 1] == "udp_ports"
    (only,) = json.loads(render_json([TCP_ONLY]))
    assert "udp_ports" not in only["calls"][0]


def test_the_page_gets_udp_ports_beside_tcp_ports() -> None:
    assert (edge_json(MIXED)["ports"], edge_json(MIXED)["udp_ports"]) == ([443, 8080], [53, 5353])
    assert (edge_json(TCP_ONLY)["ports"], edge_json(TCP_ONLY)["udp_ports"]) == ([8080], [])


def test_mcp_answers_write_udp_ports_after_the_tcp_ones() -> None:
    calls = {call["server"]: call["ports"] for call in callees([UDP_ONLY, MIXED], "web")}
    assert calls == {
        "kube-system/Deployment/coredns": ["53/udp"],
        "shop/Deployment/api": [443, 8080, "53/udp", "5353/udp"],
    }
