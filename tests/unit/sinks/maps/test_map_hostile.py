"""Hostile names through every output: each one still parses, with the name intact
(or, where a format can only hold a safe subset, visibly replaced or left out).

Sinks carry the same formats to real targets in tests/integration/sinks.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import msgspec
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from callmap.config import KafkaSettings
from callmap.wire import Edge, Endpoint
from sinks.changes import Change
from sinks.maps.exporter import ServiceGraphCollector
from sinks.maps.follower import Follower
from sinks.maps.formats.cilium import cilium_policies
from sinks.maps.formats.documents import to_json, to_yaml
from sinks.maps.formats.dot import render_dot
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.listing import render_json, render_text
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.tabular import CSV_COLUMNS, HEALTH_COLUMNS, edges_csv, edges_json
from sinks.service.formats.cef import SyslogFormat, cef_message, syslog_message
from sinks.service.formats.ecs import ecs_document, ecs_json
from sinks.service.formats.ocsf import ocsf_event, ocsf_json

NAMES = [
    'evil"name\n<script>,;|\\x00\u202e.example',
    'pipe|equals=bracket]quote"back\\slash',
    "cr\rlf\r\ntab\tnul\x00esc\x1b[31mred",
    "&lt;entity&amp; \\N \\l {{template}} ${var}",
    "- yaml: [list] {map} #comment !!python/object:os.system *alias &anchor ---",
    " leading and trailing ",
    '=HYPERLINK("http://x")',
    "名前.例え.jp",
]


def hostile_edges() -> list[Edge]:
    edges = []
    for index, name in enumerate(NAMES):
        edges.append(
            Edge(
                edge_id=f"h{index}",
                event="new",
                cluster="prod",
                client=Endpoint(type="workload", namespace="shop", name=name, kind="Deployment"),
                server=Endpoint(type="external", dns_name=name, ip="192.0.2.1"),
                ports=(443,),
                sources=("dns",),
                first_seen=1.0,
                last_seen=2.0,
            )
        )
        edges.append(
            Edge(
                edge_id=f"s{index}",
                event="refresh",
                cluster="prod",
                client=Endpoint(type="workload", namespace="shop", name="web", kind="Deployment"),
                server=Endpoint(
                    type="workload", namespace="shop", name="api", kind="Deployment", service=name
                ),
                ports=(80,),
                first_seen=1.0,
                last_seen=2.0,
            )
        )
    return edges


EDGES = hostile_edges()


def test_list_text_keeps_one_line_per_entry() -> None:
    text = render_text(EDGES)
    lines = text.splitlines()
    # one heading per client (8 hostile + web) and one line per distinct server
    assert len(lines) == 9 + 8 + 1
    assert all(line.isprintable() for line in lines)


def test_list_json_round_trips_every_name() -> None:
    clients = json.loads(render_json(EDGES))
    assert {c["client"]["name"] for c in clients} == {*NAMES, "web"}


def test_edges_json_round_trips_exactly() -> None:
    decoded = msgspec.json.decode(edges_json(EDGES), type=list[Edge])
    assert sorted(decoded, key=lambda e: e.edge_id) == sorted(EDGES, key=lambda e: e.edge_id)


def test_csv_keeps_rows_and_columns() -> None:
    rows = list(csv.DictReader(io.StringIO(edges_csv(EDGES), newline="")))
    assert len(rows) == len(EDGES) and set(rows[0]) == {*CSV_COLUMNS, *HEALTH_COLUMNS}
    names = {row["client_name"] for row in rows}
    assert '\'=HYPERLINK("http://x")' in names  # defused, otherwise intact
    assert NAMES[2] in names and "'" + NAMES[4] in names


@pytest.mark.parametrize("render", [to_yaml, to_json], ids=["yaml", "json"])
def test_kubernetes_documents_parse_and_hide_nothing(render) -> None:
    exports = [
        client_intents(EDGES),
        network_policies(EDGES, LabelBook(), options=NetpolOptions(egress=True)),
        cilium_policies(EDGES, LabelBook()),
    ]
    for export in exports:
        text = render(export.documents)
        parsed = list(yaml.safe_load_all(text)) if render is to_yaml else [json.loads(text)]
        assert parsed and text.isascii()  # non-ASCII only as visible escapes
        if render is to_yaml:
            assert parsed == export.documents
    # a name that is not a valid DNS name never becomes a Cilium FQDN rule
    fqdns = re.findall(r"matchName: (.*)", to_yaml(exports[2].documents))
    assert fqdns == []


def test_graphviz_draws_it(tmp_path) -> None:
    dot = render_dot(EDGES)
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True)
    root = ET.fromstring(svg.stdout)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    # every label is the visible (escaped) name, never interpreted
    assert 'evil"name\\n<script>,;|\\\\x00\\u202e.example' in texts
    assert "&lt;entity&amp; \\\\N \\\\l {{template}} ${var}" in texts


RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) "
    rb"(?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
    rb'(?P<sd>\[[!-~]+(?: [!-~]+="(?:[^"\\\]]|\\.)*")*\]) (?P<msg>.*)$',
    re.DOTALL,
)


def parse_cef(message: str) -> tuple[list[str], dict[str, str]]:
    """A strict CEF reader: 7 header fields, then key=value pairs."""
    fields, rest, current, i = [], "", "", 0
    while len(fields) < 7:
        char = message[i]
        if char == "\\":
            current += message[i + 1]
            i += 2
            continue
        if char == "|":
            fields.append(current)
            current = ""
        else:
            current += char
        i += 1
    rest = message[i:]
    pairs = re.findall(r"(\w+)=((?:[^\\=]|\\.)*?)(?= \w+=|$)", rest)
    unescape = {"n": "\n", "r": "\r"}
    return fields, {k: re.sub(r"\\(.)", lambda m: unescape.get(m[1], m[1]), v) for k, v in pairs}


def test_syslog_messages_parse_as_rfc5424_with_cef_inside() -> None:
    form = SyslogFormat(hostname="host name\nwith junk", procid="1")
    for edge in EDGES:
        message = syslog_message(edge, form)
        match = RFC5424.match(message)
        assert match, message
        assert match["host"] == b"host_name_with_junk"
        header, extension = parse_cef(match["msg"].decode())
        assert header[:3] == ["CEF:0", "callmap", "callmap"]
        assert extension["cs1"] == edge.edge_id
        shown = extension["dhost"] if edge.server.type == "external" else extension["cs6"]
        name = edge.server.dns_name or edge.server.service or ""
        # line breaks survive as escapes; other controls become U+FFFD
        assert shown == re.sub(r"[\x00-\x09\x0b\x0c\x0e-\x1f\u202e]", "\ufffd", name)


def test_cef_record_alone_parses_too() -> None:
    header, extension = parse_cef(cef_message(EDGES[2]))
    assert len(header) == 7 and extension["act"] == "new"


def test_ocsf_events_round_trip_every_name() -> None:
    for edge in EDGES:
        event = json.loads(ocsf_json(edge))
        assert event == json.loads(json.dumps(ocsf_event(edge)))
        assert event["unmapped"]["callmap"]["server"] == msgspec.to_builtins(edge.server)


def test_ecs_documents_round_trip_every_name() -> None:
    for edge in EDGES:
        document = json.loads(ecs_json(edge))
        assert document == json.loads(json.dumps(ecs_document(edge)))
        assert document["callmap"]["server"] == msgspec.to_builtins(edge.server)
        if edge.server.type == "external":
            assert document["destination"]["domain"] == edge.server.dns_name


def test_syslog_messages_with_ecs_inside_hold_one_json_document() -> None:
    form = SyslogFormat(hostname="host name\nwith junk", procid="1", payload="ecs")
    for edge in EDGES:
        message = syslog_message(edge, form)
        match = RFC5424.match(message)
        assert match, message
        assert b"\n" not in message
        assert json.loads(match["msg"]) == ecs_document(edge)


def test_prometheus_exposition_keeps_every_name_as_one_label_value() -> None:
    follower = Follower(KafkaSettings())
    for edge in EDGES:
        follower.book.apply(Change.of(edge))
    registry = CollectorRegistry()
    registry.register(ServiceGraphCollector(follower, 100))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    clients = {s.labels["client"] for s in families["callmap_edge_sightings"].samples}
    servers = {s.labels["server"] for s in families["callmap_edge_sightings"].samples}
    assert clients == {f"shop/{name}" for name in NAMES} | {"shop/web"}
    assert servers == set(NAMES) | {"shop/api"}
