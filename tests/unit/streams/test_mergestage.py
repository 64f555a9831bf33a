"""The merge stage: each edge announced new once, refreshed when due, expired when stale."""

from __future__ import annotations

import msgspec

from callmap.counters import Counters
from callmap.wire import EDGES, Edge, EdgeSighting, Endpoint, FlowHealth, SightingBatch, decode
from callmap.wire.topics import owner_partition
from streams.edges import edge_id, load_state
from streams.mergestage import Merged, MergeSettings, MergeStage

PARTITIONS = 4
REFRESH, TTL = 300.0, 3600.0
CLIENT = Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment")


def server(name: str) -> Endpoint:
    return Endpoint(type="workload", namespace="shop", name=name, kind="Deployment")


def sighting(to: str, ts: float) -> EdgeSighting:
    return EdgeSighting(
        edge_id=edge_id("c1", CLIENT, server(to)),
        cluster="c1",
        client=CLIENT,
        server=server(to),
        ports=(8080,),
        sources=("socket-client",),
        first_seen=ts,
        last_seen=ts,
    )


def partition_of(to: str) -> int:
    return owner_partition(edge_id("c1", CLIENT, server(to)), PARTITIONS)


def stage(table: dict[bytes, bytes] | None = None) -> MergeStage:
    settings = MergeSettings(refresh_interval=REFRESH, ttl=TTL, partitions=PARTITIONS)
    return MergeStage({} if table is None else table, settings, Counters())


def merge(merging: MergeStage, to: str, ts: float, now: float) -> Merged:
    return merging.sightings(partition_of(to), SightingBatch(sightings=(sighting(to, ts),)), now)


def events(merged: Merged) -> list[tuple[str, str]]:
    """(event, server name) of each announcement, decoded as a consumer would."""
    decoded = [decode(EDGES, a.value) for a in merged.announced]
    assert all(isinstance(edge, Edge) for edge in decoded)
    return [(edge.event, edge.server.name or "") for edge in decoded]  # type: ignore[union-attr]


def test_the_first_sighting_is_announced_new_and_repeats_are_not() -> None:
    merging = stage()
    first = merge(merging, "cart", ts=100.0, now=101.0)
    assert events(first) == [("new", "cart")]
    again = merge(merging, "cart", ts=110.0, now=111.0)
    assert events(again) == []
    assert [s.value is not None for s in again.stored] == [True]  # the state still moves on
    (state_bytes,) = merging.table.values()
    assert load_state(state_bytes).last_seen == 110.0


def test_every_announcement_comes_with_its_state_for_the_changelog() -> None:
    merged = merge(stage(), "cart", ts=100.0, now=101.0)
    (stored,) = merged.stored
    (announced,) = merged.announced
    assert stored.key == announced.key == sighting("cart", 0).edge_id.encode()
    assert stored.partition == partition_of("cart")
    assert stored.value is not None and load_state(stored.value).count == 1


def test_a_tick_refreshes_an_edge_seen_since_its_announcement_once_the_interval_passed() -> None:
    merging = stage()
    merge(merging, "cart", ts=100.0, now=100.0)
    merge(merging, "cart", ts=200.0, now=200.0)
    assert events(merging.tick(partition_of("cart"), now=250.0)) == []  # not due yet
    assert events(merging.tick(partition_of("cart"), now=401.0)) == [("refresh", "cart")]
    assert events(merging.tick(partition_of("cart"), now=800.0)) == []  # not seen since


def test_a_tick_expires_an_edge_unseen_for_the_ttl_and_forgets_it() -> None:
    merging = stage()
    merge(merging, "cart", ts=100.0, now=100.0)
    expiring = merging.tick(partition_of("cart"), now=100.0 + TTL + 1)
    assert events(expiring) == [("expired", "cart")]
    assert [s.value for s in expiring.stored] == [None]  # a tombstone for the changelog
    assert merging.table == {}
    assert events(merge(merging, "cart", ts=5000.0, now=5000.0)) == [("new", "cart")]


def test_a_tick_touches_only_the_edges_of_its_partition() -> None:
    names = [f"svc-{i}" for i in range(40)]
    merging = stage()
    for name in names:
        merge(merging, name, ts=100.0, now=100.0)
    late = 100.0 + TTL + 1
    for partition in range(PARTITIONS):
        expired = {name for _, name in events(merging.tick(partition, late))}
        assert expired == {name for name in names if partition_of(name) == partition}


def test_edges_recovered_into_the_table_are_found_by_the_next_tick_after_a_rebalance() -> None:
    before = stage()
    merge(before, "cart", ts=100.0, now=100.0)
    recovered = stage(dict(before.table))  # another worker, its table read from the changelog
    recovered.tick(partition_of("cart"), now=150.0)  # indexes what is there now
    merge(before, "email", ts=120.0, now=120.0)
    recovered.table.update(before.table)  # more recovered after the first index
    recovered.forget_index()  # the rebalance that follows
    late = 120.0 + TTL + 1
    found = {n for p in range(PARTITIONS) for _, n in events(recovered.tick(p, late))}
    assert found == {"cart", "email"}


def test_after_a_rebalance_only_the_edges_of_partitions_still_owned_stay() -> None:
    merging = stage()
    names = [f"svc-{i}" for i in range(40)]
    for name in names:
        merge(merging, name, ts=100.0, now=100.0)
    kept = {0, 2}
    dropped = merging.keep_only(kept)
    assert dropped == sum(1 for name in names if partition_of(name) not in kept)
    remaining = {load_state(value).server.name for value in merging.table.values()}
    assert remaining == {name for name in names if partition_of(name) in kept}
    late = 100.0 + TTL + 1
    expired = {n for p in range(PARTITIONS) for _, n in events(merging.tick(p, late))}
    assert expired == remaining  # nothing of another worker's is announced from here


def test_health_alone_counts_on_an_edge_that_exists_and_never_makes_one() -> None:
    merging = stage()
    failing = msgspec.structs.replace(
        sighting("cart", 0.0), count=0, first_seen=0.0, last_seen=0.0, health=FlowHealth(failed=2)
    )
    batch = SightingBatch(sightings=(failing,))
    nothing = merging.sightings(partition_of("cart"), batch, now=100.0)
    assert nothing.stored == [] and nothing.announced == [] and merging.table == {}
    assert merging.counters.stage("merge").dropped == {"health_without_edge": 1}
    merge(merging, "cart", ts=100.0, now=101.0)
    merging.sightings(partition_of("cart"), batch, now=102.0)
    (refresh,) = merging.tick(partition_of("cart"), now=101.0 + REFRESH).announced
    edge = decode(EDGES, refresh.value)
    assert isinstance(edge, Edge) and edge.health == FlowHealth(failed=2)
