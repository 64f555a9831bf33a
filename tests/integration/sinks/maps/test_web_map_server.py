"""``callmap serve`` as a process, read as a browser reads it (server-sent events, no
browser): the snapshot holds the sink corpus's map, a change to the source arrives as
an event, a token guards every route but health, policies come as YAML.

What each answer must hold is read off the corpus records directly."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import msgspec
import pytest
import yaml
from helpers.sinkcorpus import GOLDEN, HOSTILE
from helpers.sinkkafka import create_topics, publish
from helpers.webmap import events, served_map

from callmap.config import Settings
from callmap.wire import EDGES, Edge, message_key

pytestmark = [pytest.mark.timeout(120)]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def watched(base: str) -> None:
    """Once a page watches the map (it has had its snapshot)."""
    for _ in range(300):
        if json.loads(get(f"{base}/api/status")[1])["pages"] >= 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no page ever watched the map")


@pytest.fixture
def map_file(tmp_path: Path) -> Path:
    path = tmp_path / "edges.jsonl"
    shutil.copy(GOLDEN / "input-edges.jsonl", path)
    return path


async def test_the_snapshot_is_the_corpus_and_a_new_line_arrives_as_a_change(
    map_file: Path, corpus_edges: list[Edge]
) -> None:
    with served_map("--from", f"jsonl:{map_file}", "--refresh", "0.5") as base:
        stream = asyncio.create_task(asyncio.to_thread(events, f"{base}/api/events", 2))
        await watched(base)  # the page has its snapshot; then the file grows
        # a new edge and a line of garbage land in the file: the edge comes as a change,
        # the garbage is counted and the server goes on
        newcomer = msgspec.structs.replace(
            corpus_edges[0], edge_id="feedface00000001", event="new", last_seen=2e9
        )
        with map_file.open("ab") as out:
            out.write(b"{not json\n" + msgspec.json.encode(newcomer) + b"\n")
        (name, snapshot), (_, change) = await stream
        status, text = get(f"{base}/api/status")
    assert name == "snapshot" and snapshot["source"] == "jsonl"
    shown = {e["id"]: e for e in snapshot["edges"]}
    assert set(shown) == {e.edge_id for e in corpus_edges}  # expired ones included
    for record in corpus_edges:
        edge = shown[record.edge_id]
        assert (edge["event"], edge["ports"], edge["count"]) == (
            record.event,
            list(record.ports),
            record.count,
        )
    assert HOSTILE in {e["client"]["label"] for e in shown.values()}
    assert change["edge"]["id"] == newcomer.edge_id and change["edge"]["event"] == "new"
    assert status == 200 and json.loads(text)["records_rejected"] == 1


def test_a_token_guards_every_route_that_holds_data(map_file: Path) -> None:
    token = uuid.uuid4().hex
    env = {"CALLMAP_SERVE_TOKEN": token}
    with served_map("--from", f"jsonl:{map_file}", env=env) as base:
        for route in ("/api/map", "/api/events", "/api/status", "/api/policy?kind=intents"):
            assert get(f"{base}{route}")[0] == 401, route
            assert get(f"{base}{route}{'&' if '?' in route else '?'}token=wrong")[0] == 401
        # the page and its assets hold no data (a <script src> could not carry a token)
        for route in ("/", "/static/app.js", "/static/vendor/cytoscape.min.js", "/healthz"):
            assert get(f"{base}{route}")[0] == 200, route
        status, body = get(f"{base}/api/map", {"Authorization": f"Bearer {token}"})
        assert status == 200 and json.loads(body)["edges"]
        assert events(f"{base}/api/events?token={token}", 1)[0][0] == "snapshot"


def test_every_answer_carries_a_strict_content_security_policy(map_file: Path) -> None:
    with served_map("--from", f"jsonl:{map_file}") as base:
        with urllib.request.urlopen(f"{base}/", timeout=10) as answer:
            policy = answer.headers["Content-Security-Policy"]
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert "default-src 'none'" in policy
        # read-only: nothing but GET
        request = urllib.request.Request(f"{base}/api/map", method="POST", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405


def test_the_policy_of_a_workload_as_yaml(map_file: Path, corpus_edges: list[Edge]) -> None:
    # ledger (finance) is called by checkoutservice on the ports the records carry
    calls = [e for e in corpus_edges if e.server.name == "ledger" and e.event != "expired"]
    ports = sorted({p for e in calls for p in e.ports})
    with served_map("--from", f"jsonl:{map_file}") as base:
        node = f"prod:finance/{calls[0].server.kind}/ledger"
        status, text = get(f"{base}/api/policy?workload={node}&kind=networkpolicy")
        assert status == 200, text
        (policy,) = [d for d in yaml.safe_load_all(text) if d]
        assert (policy["kind"], policy["metadata"]["namespace"]) == ("NetworkPolicy", "finance")
        assert (
            sorted(p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]) == ports
        )
        status, text = get(
            f"{base}/api/policy?workload=prod:shop/Deployment/checkoutservice&kind=intents"
        )
        assert status == 200 and "kind: ClientIntents" in text
        assert get(f"{base}/api/policy?workload=nothing&kind=intents")[0] == 404
        assert get(f"{base}/api/policy?workload={node}&kind=rm")[0] == 400


@pytest.mark.kafka
async def test_an_edge_on_the_topic_arrives_as_a_change(
    settings: Settings, kafka_bootstrap: str, corpus_edges: list[Edge]
) -> None:
    cluster = f"web-{uuid.uuid4().hex[:8]}"
    edges = [
        msgspec.structs.replace(e, cluster=cluster, edge_id=f"{cluster}-{e.edge_id}")
        for e in corpus_edges
    ]
    await create_topics(settings, [EDGES])
    await publish(settings, edges)
    env = {"CALLMAP_KAFKA_BOOTSTRAP": kafka_bootstrap}
    with served_map("--cluster", cluster, env=env) as base:
        stream = asyncio.create_task(
            asyncio.to_thread(events, f"{base}/api/events", 3, 60, later_snapshots=False)
        )
        await watched(base)  # the page has its snapshot; then the topic changes
        newcomer = msgspec.structs.replace(edges[0], edge_id=f"{cluster}-new", event="new")
        await publish(settings, [newcomer], tombstones=[message_key(edges[1])])
        (_, snapshot), *changes = await stream
    assert {e["id"] for e in snapshot["edges"]} == {e.edge_id for e in edges}
    # two partitions: the two changes come in either order
    (added,) = [c["edge"] for _, c in changes if "edge" in c]
    assert added["id"] == newcomer.edge_id and added["event"] == "new"
    assert [c for _, c in changes if "removed" in c] == [{"removed": edges[1].edge_id}]
