"""Hostile cluster names on global edges, through every output: the structure holds,
the name survives (escaped) or is left out where a format can only hold a safe one."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import msgspec
import pytest
import yaml

from callmap.wire import Edge, Endpoint
from sinks.changes import Change
from sinks.maps.filters import MapFilter
from sinks.maps.formats.cilium import cilium_policies
from sinks.maps.formats.documents import to_yaml
from sinks.maps.formats.dot import render_dot
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.listing import render_json, render_text
from sinks.maps.formats.netpol import network_policies
from sinks.maps.formats.tabular import edges_csv
from sinks.service.destinations.sqlite import connect, migrate, read_edges, write_batch
from sinks.service.formats.cef import SyslogFormat, syslog_message
from sinks.service.formats.ocsf import ocsf_json

HOSTILE = 'we"st]\n|x=1 \\ \u202e\x1b[31m'


def global_edges(remote: str) -> list[Edge]:
    def workload(name: str, cluster: str) -> Endpoint:
        return Endpoint(
            type="workload", namespace="shop", name=name, kind="Deployment", cluster=cluster
        )

    common = {"ports": (80,), "first_seen": 1.0, "last_seen": 2.0, "event": "new"}
    return [
        Edge(edge_id="in", cluster=remote, client=workload("web", remote),
             server=workload("api", "east"), **common),  # type: ignore[arg-type]
        Edge(edge_id="out", cluster="east", client=workload("api", "east"),
             server=workload("db", remote), **common),  # type: ignore[arg-type]
    ]  # fmt: skip


EDGES = global_edges(HOSTILE)
SD_ELEMENT = re.compile(r'\[[!-~]+(?: [!-~]+="(?:[^"\\\]]|\\.)*")*\]')
EAST = MapFilter(clusters=frozenset({"east"}))


def test_list_text_stays_one_line_per_entry_and_shows_the_name_escaped() -> None:
    lines = render_text(EDGES).splitlines()
    assert len(lines) == 4 and all(line.isprintable() for line in lines)
    assert '(cluster we"st]\\n|x=1 \\\\ \\u202e\\x1b[31m)' in lines[0] + lines[1] + lines[2]


def test_list_json_and_csv_round_trip_the_name() -> None:
    clients = json.loads(render_json(EDGES))
    assert {c["cluster"] for c in clients} == {"east", HOSTILE}
    rows = list(csv.DictReader(io.StringIO(edges_csv(EDGES), newline="")))
    assert len(rows) == 2 and {row["client_cluster"] for row in rows} == {"east", HOSTILE}


def test_graphviz_names_the_cluster_in_one_quoted_string() -> None:
    dot = render_dot(EDGES)
    # the same statements, line for line, as with a plain name
    assert len(dot.splitlines()) == len(render_dot(global_edges("west")).splitlines())
    labels = re.findall(r'label="cluster ((?:[^"\\]|\\.)*)"', dot)
    assert len(labels) == 2
    if shutil.which("dot") is not None:  # and Graphviz reads it
        subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True)


@pytest.mark.parametrize(
    "export",
    [
        lambda: cilium_policies(EDGES, LabelBook(), EAST),
        lambda: client_intents(EDGES, EAST),
        lambda: network_policies(EDGES, LabelBook(), EAST),
    ],
    ids=["cilium", "intents", "networkpolicy"],
)
def test_policies_never_write_an_invalid_cluster_name(export) -> None:
    result = export()
    text = to_yaml(result.documents)
    assert list(yaml.safe_load_all(text)) == result.documents
    assert 'we\\"st' not in text and 'we"st' not in text  # never in a policy
    assert result.counts["cross_cluster_left_out"] >= 1


def test_a_valid_remote_cluster_is_selected_by_label() -> None:
    export = cilium_policies(global_edges("west"), LabelBook(), EAST)
    (policy,) = export.documents
    (rule,) = policy["spec"]["ingress"]
    assert rule["fromEndpoints"][0]["matchLabels"]["io.cilium.k8s.policy.cluster"] == "west"


def test_syslog_cef_keeps_its_structure() -> None:
    for edge in EDGES:
        message = syslog_message(edge, SyslogFormat(hostname="h")).decode()
        assert "\n" not in message and "\r" not in message
        structured = message.split(" CEF:0|", 1)[0].split(" ", 6)[6]
        assert SD_ELEMENT.fullmatch(structured), structured  # one element, every param closed
        assert 'Cluster="we\\"st\\]' in structured
        assert "flexString1Label=clientCluster" in message
        assert "|x\\=1" in message  # = escaped in the CEF extension value


def test_ocsf_round_trips_the_name_as_the_endpoints_zone() -> None:
    event = json.loads(ocsf_json(EDGES[0]))
    assert event["src_endpoint"]["zone"] == HOSTILE and event["dst_endpoint"]["zone"] == "east"
    assert event["unmapped"]["callmap"]["client"] == msgspec.to_builtins(EDGES[0].client)


def test_sqlite_stores_the_name_as_a_parameter(tmp_path: Path) -> None:
    connection: sqlite3.Connection = connect(tmp_path / "h.db", busy_timeout=0.1)
    migrate(connection)
    write_batch(connection, [Change.of(edge) for edge in EDGES])
    assert read_edges(connection) == sorted(EDGES, key=lambda edge: edge.edge_id)
