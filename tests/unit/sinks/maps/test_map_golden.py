"""Every output format, byte for byte, from the corpus (see conftest.py).

A golden file is the reviewed output; a change to a format shows up as a diff
of these files. The tests also state the properties a reader relies on, so a
regenerated golden file cannot quietly lose them.
"""

from __future__ import annotations

import json

import yaml

from sinks.escape import terminal
from sinks.maps.filters import MapFilter
from sinks.maps.formats.cilium import cilium_policies
from sinks.maps.formats.documents import to_json, to_yaml
from sinks.maps.formats.dot import render_dot
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.listing import render_json, render_text
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.policy import PortMap
from sinks.maps.formats.tabular import edges_csv, edges_json
from sinks.service.formats.cef import SyslogFormat, syslog_message
from sinks.service.formats.ecs import ecs_json
from sinks.service.formats.ocsf import ocsf_json

LIVE = MapFilter()
WITH_EXPIRED = MapFilter(include_expired=True)


def test_list_prints_the_form_users_know(corpus, golden) -> None:
    text = render_text(LIVE.select(corpus.edges))
    golden.check("list.txt", text)
    assert (
        "checkoutservice in namespace shop calls:\n"
        "  - cartservice\n"
        "  - cartservice-canary\n"
        "  - paymentservice\n"
        "  - ledger in namespace finance\n"
        "  - api.stripe.com (external)\n"
    ) in text
    assert "cdn.example.net" not in text  # expired: left out unless asked
    assert "  - 10.9.8.7 (unresolved IP)\n" in text


def test_list_marks_expired_edges_when_asked(corpus, golden) -> None:
    text = render_text(WITH_EXPIRED.select(corpus.edges))
    golden.check("list-expired.txt", text)
    assert "  - cdn.example.net (external) [expired]\n" in text


def unmarked(line: str) -> str:
    """A listing line up to its health, without the marks."""
    return line.split(":")[0].replace(" [failing]", "").replace(" [slow]", "")


def test_list_with_health_tells_how_each_call_went_and_marks_the_failing(corpus, golden) -> None:
    text = render_text(LIVE.select(corpus.edges), health=True)
    golden.check("list-health.txt", text)
    assert (
        "  - checkoutservice [failing]: 3 failed, 1 reset, 12 opened, 11 closed,"
        " 48.2 kB sent, 1.52 MB received\n"
    ) in text  # conntrack only, no RTT: as before RTT existed
    assert (
        "checkoutservice in namespace shop calls:\n"
        "  - cartservice [slow]: 40 opened, 40 closed, RTT p50 1.1 ms, p99 240 ms, 6 retransmits\n"
    ) in text  # 3 of 40 round trips over 200 ms: the p99 is one of them
    assert "  - paymentservice\n" in text  # no health reported: the line as without --health
    plain = render_text(LIVE.select(corpus.edges))
    assert [unmarked(line) for line in text.splitlines()] == [
        line.split(":")[0] for line in plain.splitlines()
    ]  # the same calls, in the same order
    with_health = {"  - checkoutservice", "  - cartservice"}  # the corpus's two edges with health
    changed = {
        unmarked(a) for a, b in zip(text.splitlines(), plain.splitlines(), strict=True) if a != b
    }
    assert changed == with_health
    lenient = render_text(LIVE.select(corpus.edges), health=True, slow_ms=250)
    assert "  - cartservice: 40 opened" in lenient  # the threshold is the caller's


def test_list_as_json_holds_the_same_map(corpus, golden) -> None:
    output = render_json(LIVE.select(corpus.edges))
    golden.check("list.json", output)
    clients = json.loads(output)
    checkout = next(c for c in clients if c["client"].get("name") == "checkoutservice")
    assert [call["display"] for call in checkout["calls"]] == [
        "cartservice",
        "cartservice-canary",
        "paymentservice",
        "ledger in namespace finance",
        "api.stripe.com (external)",
    ]


def test_intents_as_yaml_and_json(corpus, golden) -> None:
    export = client_intents(corpus.edges)
    golden.check("intents.yaml", to_yaml(export.documents))
    golden.check("intents.json", to_json(export.documents))
    golden.check("intents-warnings.txt", "".join(terminal(w) + "\n" for w in export.warnings))
    checkout = next(d for d in export.documents if d["metadata"]["name"] == "checkoutservice")
    assert checkout["spec"] == {
        "workload": {"name": "checkoutservice", "kind": "Deployment"},
        "targets": [
            {"kubernetes": {"name": "cartservice", "kind": "Deployment"}},
            {"kubernetes": {"name": "cartservice-canary", "kind": "Deployment"}},
            {"kubernetes": {"name": "paymentservice", "kind": "Deployment"}},
            {"kubernetes": {"name": "ledger.finance", "kind": "StatefulSet"}},
            {"internet": {"domains": ["api.stripe.com"]}},
        ],
    }


def test_networkpolicies_with_pod_labels_and_egress(corpus, golden) -> None:
    export = network_policies(
        corpus.edges,
        LabelBook.from_pods(corpus.pods),
        options=NetpolOptions(egress=True),
        ports=PortMap(corpus.services),
    )
    golden.check("networkpolicy.yaml", to_yaml(export.documents))
    golden.check("networkpolicy-warnings.txt", "".join(terminal(w) + "\n" for w in export.warnings))
    ledger = next(d for d in export.documents if d["metadata"]["name"] == "callmap-ledger-ingress")
    assert ledger["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "ledger"}}
    (rule,) = ledger["spec"]["ingress"]
    assert rule["from"] == [
        {
            "podSelector": {"matchLabels": {"app": "checkoutservice", "version": "v1"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
        }
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8443}]


def test_networkpolicies_by_label_convention(corpus, golden) -> None:
    export = network_policies(corpus.edges, LabelBook())
    golden.check("networkpolicy-convention.yaml", to_yaml(export.documents))
    selectors = [d["spec"]["podSelector"]["matchLabels"] for d in export.documents]
    assert all(list(s) == ["app.kubernetes.io/name"] for s in selectors)


def test_cilium_policies(corpus, golden) -> None:
    export = cilium_policies(
        corpus.edges, LabelBook.from_pods(corpus.pods), ports=PortMap(corpus.services)
    )
    golden.check("cilium.yaml", to_yaml(export.documents))
    golden.check("cilium-warnings.txt", "".join(terminal(w) + "\n" for w in export.warnings))


def test_edges_as_json_and_csv(corpus, golden) -> None:
    edges = LIVE.select(corpus.edges)
    golden.check("edges.json", edges_json(edges))
    golden.check("edges.csv", edges_csv(edges))
    assert len(json.loads(edges_json(edges))) == len(edges)


def test_graphviz_dot(corpus, golden) -> None:
    dot = render_dot(WITH_EXPIRED.select(corpus.edges))
    golden.check("map.dot", dot)
    assert "subgraph cluster_" in dot and "outside the cluster" in dot
    assert "last seen: 2023-11-14T22:23:20.000Z" in dot
    failing = [line for line in dot.splitlines() if 'color="#c62828"' in line]
    assert len(failing) == 1 and 'label="5050\\n3 failed, 1 reset (12 opened)"' in failing[0]
    slow = [line for line in dot.splitlines() if 'color="#e65100"' in line]
    assert len(slow) == 1 and 'label="7070\\np99 240 ms"' in slow[0]
    assert "lately: 40 opened, 40 closed, RTT p50 1.1 ms, p99 240 ms, 6 retransmits" in slow[0]


def test_syslog_cef_messages(corpus, golden) -> None:
    form = SyslogFormat(hostname="node-a", procid="4242", version="0.1.0")
    messages = [syslog_message(edge, form) for edge in corpus.edges]
    golden.check("syslog-cef.txt", b"\n".join(messages) + b"\n")
    assert all(b"\n" not in message for message in messages)
    failing = messages[0].decode()  # the corpus's first edge has health
    # CEF's bytes are relative to the source (the client): in= what it sent, out= what came back
    assert " in=48210 out=1520000" in failing and " cn1Label=failedConnects cn1=3 " in failing
    assert sum(b" in=" in message for message in messages) == 1  # bytes only where counted
    slow = messages[1].decode()  # the corpus's edge with round-trip times
    assert slow.endswith(
        " cfp1Label=rttP99Ms cfp1=240.387 flexNumber1Label=retransmits flexNumber1=6"
    )
    assert sum(b"cfp1=" in message or b"flexNumber1=" in message for message in messages) == 1


def test_ocsf_events(corpus, golden) -> None:
    lines = [ocsf_json(edge, version="0.1.0") for edge in corpus.edges]
    golden.check("ocsf.jsonl", b"\n".join(lines) + b"\n")
    traffic = json.loads(lines[0])["traffic"]
    assert traffic == {"bytes_out": 48210, "bytes_in": 1520000, "bytes": 1568210}
    slow = json.loads(lines[1])
    assert slow["unmapped"]["callmap"]["health"] == {
        "opened": 40,
        "closed": 40,
        "retransmits": 6,
        "rtt_samples": 40,
        "rtt_p50_ms": 1.117,
        "rtt_p99_ms": 240.387,
        "rtt_mean_ms": 20.771,
    }
    assert "traffic" not in slow  # no bytes counted; OCSF's traffic has no RTT


def test_ecs_documents(corpus, golden) -> None:
    lines = [ecs_json(edge, version="0.1.0") for edge in corpus.edges]
    golden.check("ecs.jsonl", b"\n".join(lines) + b"\n")
    first = json.loads(lines[0])
    assert (first["source"]["bytes"], first["destination"]["bytes"]) == (48210, 1520000)
    assert first["network"]["bytes"] == 48210 + 1520000  # ECS: their sum when both are known
    assert all("bytes" not in json.loads(line)["network"] for line in lines[1:])
    assert first["callmap"]["health"]["failed"] == 3
    slow = json.loads(lines[1])
    health = slow["callmap"]["health"]
    assert (health["rtt_p99_ms"], health["rtt_p50_ms"], health["retransmits"]) == (
        240.387,
        1.117,
        6,
    )
    assert "rtt" not in health  # buckets would be flattened into noise by an index
    assert "duration" not in slow["event"]  # the event's length, not the network's latency


def test_every_kubernetes_document_parses_back(corpus) -> None:
    export = network_policies(corpus.edges, LabelBook.from_pods(corpus.pods))
    assert list(yaml.safe_load_all(to_yaml(export.documents))) == export.documents
    assert json.loads(to_json(export.documents))["items"] == export.documents
