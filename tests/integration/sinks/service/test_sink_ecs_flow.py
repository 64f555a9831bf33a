"""ECS documents, checked against the field definitions Elastic publishes (the
``@elastic/ecs`` package, fetched by devtools/ecs.py), in files and over syslog."""

from __future__ import annotations

import ipaddress
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from callmap.wire import Edge, Endpoint
from devtools.ecs import ecs_fields
from sinks.changes import event_key
from sinks.service.destinations.linefile import LINE_FORMATS, LineFileSink
from sinks.service.destinations.syslog import SyslogSink, SyslogTarget
from sinks.service.formats.cef import SyslogFormat
from sinks.service.formats.ecs import ECS_VERSION, ecs_document

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

Fields = dict[str, dict[str, Any]]
CUSTOM = "callmap"
"""The one top-level name of fields of our own; everything else must be ECS's."""


@pytest.fixture(scope="module", params=[ECS_VERSION, "9.4.0"])
def ecs(request: pytest.FixtureRequest) -> tuple[str, Fields]:
    """The definitions of the ECS release the documents name, and of the latest one."""
    return request.param, ecs_fields(request.param)


def leaves(document: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(flat name, value) of every field; a list is one field's values."""
    out: list[tuple[str, Any]] = []
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += leaves(value, name + ".")
        else:
            out.append((name, value))
    return out


def _type_ok(kind: str, value: Any) -> bool:
    if kind in ("keyword", "constant_keyword", "wildcard", "match_only_text", "text"):
        return isinstance(value, str)
    if kind in ("long", "integer", "short", "byte"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "ip":
        return isinstance(value, str) and bool(ipaddress.ip_address(value))
    if kind == "date":
        return isinstance(value, str) and datetime.fromisoformat(value) is not None
    return False


def violations(document: dict[str, Any], fields: Fields) -> list[str]:
    """What in ``document`` ECS's definitions do not allow."""
    found = []
    for name, value in leaves(document):
        if name.split(".")[0] == CUSTOM:
            continue
        spec = fields.get(name)
        if spec is None:
            found.append(f"{name}: not an ECS field")
            continue
        is_array = "array" in spec.get("normalize", [])
        if isinstance(value, list) != is_array:
            found.append(f"{name}: array expected {is_array}, got {value!r}")
        for item in value if isinstance(value, list) else [value]:
            if not _type_ok(spec["type"], item):
                found.append(f"{name}: {item!r} is not of type {spec['type']}")
            allowed = [a["name"] for a in spec.get("allowed_values", [])]
            allowed += spec.get("expected_values", [])
            if allowed and item not in allowed:
                found.append(f"{name}: {item!r} not among {allowed}")
    event = document["event"]
    (category,) = event["category"]
    expected = {
        a["name"]: a.get("expected_event_types", [])
        for a in fields["event.category"]["allowed_values"]
    }[category]
    found += [
        f"event.type {t!r} not expected for {category}" for t in event["type"] if t not in expected
    ]
    return found


def test_every_document_of_the_corpus_is_valid_ecs(corpus_edges, ecs) -> None:
    _, fields = ecs
    for edge in corpus_edges:
        document = ecs_document(edge)
        assert violations(document, fields) == [], edge.edge_id
        assert json.loads(json.dumps(document)) == document
    assert ecs_document(corpus_edges[0])["ecs"]["version"] == ECS_VERSION
    directions = {ecs_document(edge)["network"]["direction"] for edge in corpus_edges}
    assert {"internal", "outbound"} <= directions, directions


def test_the_checker_refuses_what_ecs_does_not_allow(corpus_edges, ecs) -> None:
    _, fields = ecs
    document = ecs_document(corpus_edges[0])
    document["event"]["kind"] = "edge"  # not an allowed kind
    document["event"]["type"] = ["connection", "creation"]  # not a network type
    document["source"]["port"] = "80"  # a string where ECS has a long
    document["destination"]["nickname"] = "x"  # no such field
    document["related"] = {"hosts": "one"}  # an array field as a scalar
    document["network"]["direction"] = "sideways"  # not an expected value
    problems = violations(document, fields)
    assert len(problems) == 6, problems


async def test_jsonl_files_of_ecs_hold_one_valid_document_per_edge_event(
    edges_topic, tmp_path: Path, corpus_edges, ecs
) -> None:
    _, fields = ecs
    await edges_topic.produce(corpus_edges)
    prefix, render = LINE_FORMATS["ecs"]
    await edges_topic.run_to_end(
        LineFileSink(tmp_path, prefix=prefix, render=render), f"ecs-{uuid.uuid4().hex[:6]}"
    )
    (path,) = tmp_path.glob("ecs-*.jsonl")
    documents = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted(d["event"]["id"] for d in documents) == sorted(map(event_key, corpus_edges))
    for document in documents:
        assert violations(document, fields) == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ecs_over_syslog_reaches_rsyslog_as_json(
    edges_topic, rsyslog, corpus_edges, transport: str
) -> None:
    fields = ecs_fields(ECS_VERSION)
    hostname = f"e-{uuid.uuid4().hex[:8]}"
    port = rsyslog.udp if transport == "udp" else rsyslog.tcp
    sink = SyslogSink(
        SyslogTarget.parse(f"{transport}://127.0.0.1:{port}"),
        SyslogFormat(hostname=hostname, payload="ecs"),
        timeout=2,
    )
    await edges_topic.produce(corpus_edges)
    await edges_topic.run_to_end(sink, f"syslog-ecs-{transport}-{hostname}")
    received = rsyslog.wait_for(hostname, len(corpus_edges))
    documents = [json.loads(message["msg"]) for message in received]
    assert sorted(d["event"]["id"] for d in documents) == sorted(map(event_key, corpus_edges))
    for message, document in zip(received, documents, strict=True):
        assert violations(document, fields) == []
        assert message["msgid"] == document["event"]["action"]


async def test_an_ecs_message_too_long_for_udp_is_counted_not_cut(edges_topic, rsyslog) -> None:
    hostname = f"l-{uuid.uuid4().hex[:8]}"
    short = Endpoint(type="external", dns_name="api.example.org")
    long = Endpoint(type="external", dns_name=("a" * 60 + ".") * 4 + "example.org")
    client = Endpoint(type="workload", namespace="shop", name="cart", kind="Deployment")
    edges = [
        Edge(edge_id=f"{hostname}-{n}", event="new", cluster="prod", client=client,
             server=server, ports=(443,), first_seen=1.0, last_seen=2.0)
        for n, server in enumerate((short, long))
    ]  # fmt: skip
    sink = SyslogSink(
        SyslogTarget.parse(f"udp://127.0.0.1:{rsyslog.udp}"),
        SyslogFormat(hostname=hostname, payload="ecs"),
        max_message=1800,  # the first message is about 1,220 bytes, the second 2,420
    )
    await edges_topic.produce(edges)
    await edges_topic.run_to_end(sink, f"syslog-ecs-long-{hostname}")
    received = rsyslog.wait_for(hostname, 2, timeout=3)
    assert [json.loads(m["msg"])["callmap"]["edge_id"] for m in received] == [edges[0].edge_id]
    assert sink.stats.skipped["too_long"] == 1
