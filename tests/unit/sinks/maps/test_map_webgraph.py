"""The web map's data: edges and nodes as the page reads them, the changes between two
maps, event frames, and the live map that ``callmap serve`` streams (no server)."""

from __future__ import annotations

import asyncio
import json

import msgspec
from helpers.mapedges import edge, workload

from callmap.wire import Endpoint, FlowHealth, PodIdentity, RttSamples, WorkloadRef
from sinks.maps.filters import MapFilter
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.webgraph import (
    MapChange,
    changes_between,
    edge_json,
    event_frame,
    node_id,
    snapshot,
)
from sinks.maps.webmap import MAX_BACKLOG, LiveMap, Watcher

WEB, API = workload("web"), workload("api", service="api-svc")
STRIPE = Endpoint(type="external", dns_name="api.stripe.com", ip="203.0.113.9")
TO_API, TO_STRIPE = edge(WEB, API), edge(API, STRIPE, first=300.0)


def frames(data: bytes) -> list[tuple[str, dict[str, object]]]:
    """Server-sent events as (name, data), read as a browser reads them."""
    found = []
    for block in data.decode().split("\n\n"):
        if block:
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_an_edge_carries_both_nodes_whole_in_their_cluster() -> None:
    shown = edge_json(TO_API)
    assert shown["client"] == {
        "id": "prod:shop/Deployment/web",
        "label": "web",
        "type": "workload",
        "namespace": "shop",
        "cluster": "prod",
        "kind": "Deployment",
        "labels": {},
    }
    # the node is the workload, whichever service reached it
    assert shown["server"]["id"] == "prod:shop/Deployment/api"
    assert (shown["kind"], shown["ports"], shown["sources"]) == ("pod-to-pod", [8080], ["dns"])
    assert (shown["first_seen"], shown["last_seen"], shown["event"]) == (100.0, 110.0, "new")


def test_an_edge_with_health_carries_it_and_the_words_of_the_listing() -> None:
    lately = FlowHealth(opened=12, failed=3, resets=1)
    told = msgspec.structs.replace(
        TO_API, health=lately, health_total=lately.plus(FlowHealth(opened=100))
    )
    data = edge_json(told)
    assert data["health"] == {"opened": 12, "failed": 3, "resets": 1}
    assert data["health_total"] == {"opened": 112, "failed": 3, "resets": 1}
    assert data["failing"] is True and data["health_text"] == "3 failed, 1 reset, 12 opened"
    assert "health" not in edge_json(TO_API)  # none reported: as before


def test_an_edge_with_round_trips_carries_them_for_the_details_panel() -> None:
    lately = FlowHealth(opened=3, retransmits=2, rtt=RttSamples.of(1100, 1100, 240_000))
    told = msgspec.structs.replace(TO_API, health=lately, health_total=lately)
    data = edge_json(told)
    assert data["health_text"] == "3 opened, RTT p50 1.1 ms, p99 240 ms, 2 retransmits"
    assert (data["slow"], data["failing"], data["retransmits"]) == (True, False, 2)
    assert (data["rtt_p50_ms"], data["rtt_p99_ms"]) == (1.117, 240.387)
    assert edge_json(told, slow_ms=300)["slow"] is False


def test_the_live_map_marks_slow_calls_by_its_threshold() -> None:
    lately = FlowHealth(opened=1, rtt=RttSamples.of(240_000))
    told = msgspec.structs.replace(TO_API, health=lately, health_total=lately)
    strict, lenient = LiveMap(MapFilter(), "sqlite"), LiveMap(MapFilter(), "sqlite", slow_ms=300)
    for live in (strict, lenient):
        live.replace_all([told])
    assert [e["slow"] for e in strict.snapshot()["edges"]] == [True]  # type: ignore[index]
    assert [e["slow"] for e in lenient.snapshot()["edges"]] == [False]  # type: ignore[index]


def test_an_external_is_one_node_by_name_in_no_cluster() -> None:
    server = edge_json(TO_STRIPE)["server"]
    assert server["id"] == "external:api.stripe.com"
    assert node_id(Endpoint(type="external", dns_name="api.stripe.com")) == server["id"]
    assert (server["cluster"], server["kind"], edge_json(TO_STRIPE)["kind"]) == (
        None,
        None,
        "external",
    )


def test_nodes_carry_their_pods_labels_when_known() -> None:
    pod = PodIdentity(
        cluster="prod",
        uid="u1",
        namespace="shop",
        name="web-1",
        ips=("10.0.0.1",),
        labels={"app": "web", "tier": "front"},
        workload=WorkloadRef(kind="Deployment", name="web"),
    )
    shown = edge_json(TO_API, LabelBook.from_pods([pod]))
    assert shown["client"]["labels"] == {"app": "web", "tier": "front"}
    assert shown["server"]["labels"] == {}


def test_a_snapshot_holds_every_edge_and_the_clusters() -> None:
    whole = snapshot([TO_API, TO_STRIPE], now=500.0, source="kafka")
    assert [e["id"] for e in whole["edges"]] == ["web->api", "api->api.stripe.com"]
    assert (whole["now"], whole["source"], whole["clusters"]) == (500.0, "kafka", ["prod"])


def test_changes_between_two_maps_are_additions_updates_and_removals() -> None:
    refreshed = msgspec.structs.replace(TO_API, event="refresh", count=5)
    before = {"web->api": TO_API, "api->api.stripe.com": TO_STRIPE}
    after = {"web->api": refreshed, "web->db": edge(WEB, workload("db"))}
    assert changes_between(before, after) == [
        MapChange("api->api.stripe.com", None),
        MapChange("web->api", refreshed),
        MapChange("web->db", after["web->db"]),
    ]
    assert changes_between(after, after) == []


def test_an_event_frame_is_one_data_line_whatever_the_names_hold() -> None:
    hostile = workload('evil"\n\ndata: x<script>\u2028')
    frame = event_frame("change", {"edge": edge_json(edge(hostile, API))})
    assert frame.count(b"\n\n") == 1 and frame.endswith(b"\n\n")
    ((name, data),) = frames(frame)
    assert name == "change"
    assert data["edge"]["client"]["label"] == 'evil"\n\ndata: x<script>\u2028'  # type: ignore[index]


async def test_the_live_map_streams_changes_to_every_watcher() -> None:
    live = LiveMap(MapFilter(), "sqlite")
    first, second = live.watch(), live.watch()
    live.replace_all([TO_API, TO_STRIPE])
    live.replace_all([TO_API])  # stripe gone
    expected = [
        ("change", {"edge": edge_json(TO_STRIPE)}),
        ("change", {"edge": edge_json(TO_API)}),
        ("change", {"removed": "api->api.stripe.com"}),
    ]
    for watcher in (first, second):
        sent = b"".join(watcher.frames.get_nowait() for _ in range(watcher.frames.qsize()))
        assert frames(sent) == expected
    ((name, whole),) = frames(live.snapshot_frame())
    assert name == "snapshot" and [e["id"] for e in whole["edges"]] == ["web->api"]  # type: ignore[index]


async def test_the_live_map_keeps_expired_edges_and_what_the_filters_select() -> None:
    live = LiveMap(MapFilter(namespaces=frozenset({"shop"})), "kafka")
    gone = edge(WEB, workload("cache"), event="expired")
    elsewhere = edge(workload("a", "other"), workload("b", "other"))
    live.replace_all([TO_API, gone, elsewhere])
    assert sorted(live.edges) == ["web->api", "web->cache"]
    # an update that leaves the selection removes the edge
    moved = msgspec.structs.replace(
        TO_API, client=workload("web", "other"), server=workload("x", "other")
    )
    live.apply(MapChange("web->api", moved))
    assert sorted(live.edges) == ["web->cache"]


def labelled(name: str, labels: dict[str, str], cluster: str = "prod") -> PodIdentity:
    return PodIdentity(
        cluster=cluster,
        uid=f"{cluster}-{name}",
        namespace="shop",
        name=f"{name}-1",
        workload=WorkloadRef(kind="Deployment", name=name),
        labels=labels,
    )


def sent(watcher: Watcher) -> list[str]:
    return [
        name
        for name, _ in frames(
            b"".join(watcher.frames.get_nowait() for _ in range(watcher.frames.qsize()))
        )
    ]


async def test_pages_get_a_new_snapshot_when_a_workload_on_the_map_is_relabelled() -> None:
    live = LiveMap(MapFilter(), "kafka")
    live.replace_all([TO_API])
    live.ready.set()
    page = live.watch()
    web = labelled("web", {"tier": "front"})
    live.set_identities([web], [])
    assert sent(page) == ["snapshot"]
    ((_, whole),) = frames(live.snapshot_frame())
    assert whole["edges"][0]["client"]["labels"] == {"tier": "front"}  # type: ignore[index]

    # the same labels again, a workload off the map, the same name in another cluster
    live.set_identities([web, labelled("batch", {"tier": "jobs"})], [])
    live.set_identities([web, labelled("web", {"tier": "other"}, cluster="staging")], [])
    assert sent(page) == []

    live.set_identities([labelled("web", {"tier": "edge"})], [])
    assert sent(page) == ["snapshot"]


async def test_a_watcher_that_falls_too_far_behind_is_ended_not_buffered() -> None:
    live = LiveMap(MapFilter(), "kafka")
    slow = live.watch()
    for number in range(MAX_BACKLOG + 5):
        live.apply(MapChange(f"e{number}", edge(workload(f"c{number}"), API)))
    assert slow.lagging
    assert slow.frames.qsize() == MAX_BACKLOG + 1  # the last one is the empty wake-up
    live.unwatch(slow)
    await asyncio.sleep(0)


def test_the_policy_of_a_node_is_what_export_writes_for_it() -> None:
    live = LiveMap(MapFilter(), "kafka")
    live.replace_all([TO_API, TO_STRIPE])
    text, warnings = live.policy("prod:shop/Deployment/api", "networkpolicy") or ("", [])
    assert "kind: NetworkPolicy" in text and "name: callmap-api-ingress" in text
    assert "port: 8080" in text and warnings == []
    intents, _ = live.policy("prod:shop/Deployment/api", "intents") or ("", [])
    assert "kind: ClientIntents" in intents and "api.stripe.com" in intents
    # not a server of any call, not a workload, not a node at all
    assert live.policy("prod:shop/Deployment/web", "networkpolicy") is None
    assert live.policy("external:api.stripe.com", "networkpolicy") is None
    assert live.policy("nothing", "intents") is None
