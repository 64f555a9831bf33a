"""Lifecycle merge: replays, duplicates and late messages never move an edge backwards."""

from __future__ import annotations

import itertools

import msgspec

from callmap.wire import Edge, Endpoint
from sinks.changes import Change, event_key, order_key, supersedes
from sinks.lifecycle import EdgeBook, Write, reduce_batch


def edge(event: str = "new", last: float = 10.0, count: int = 1, edge_id: str = "e1") -> Edge:
    return Edge(
        edge_id=edge_id,
        event=event,  # type: ignore[arg-type]
        cluster="c",
        client=Endpoint(type="workload", namespace="a", name="x", kind="Deployment"),
        server=Endpoint(type="external", dns_name="example.org"),
        first_seen=1.0,
        last_seen=last,
        count=count,
    )


NEW, REFRESH, EXPIRED = edge("new", 10, 1), edge("refresh", 70, 5), edge("expired", 70, 5)


def test_events_order_by_sighting_then_lifecycle_step() -> None:
    assert order_key(NEW) < order_key(REFRESH) < order_key(EXPIRED)
    assert supersedes(EXPIRED, REFRESH) and not supersedes(REFRESH, EXPIRED)
    assert supersedes(REFRESH, REFRESH)  # the same state again is not older


def test_an_edge_that_comes_back_after_expiring_is_live_again() -> None:
    again = edge("new", 500, 1)
    assert EdgeBook().apply_all(map(Change.of, [NEW, EXPIRED, again])).edges() == [again]


def test_every_order_of_the_same_events_ends_in_the_same_state() -> None:
    events = [NEW, REFRESH, EXPIRED, edge("new", 10, 1, "e2"), edge("refresh", 80, 9, "e2")]
    states = {
        tuple(msgspec.json.encode(e) for e in EdgeBook().apply_all(map(Change.of, order)).edges())
        for order in itertools.permutations(events)
    }
    assert len(states) == 1


def test_a_replay_changes_nothing() -> None:
    book = EdgeBook().apply_all(map(Change.of, [NEW, REFRESH]))
    assert not book.apply(Change.of(NEW)) and not book.apply(Change.of(REFRESH))
    assert book.edges() == [REFRESH]


def test_a_tombstone_deletes_the_edge() -> None:
    book = EdgeBook().apply_all([Change.of(NEW), Change("e1")])
    assert len(book) == 0


def test_event_keys_tell_events_apart_and_match_on_replay() -> None:
    assert event_key(NEW) == event_key(edge("new", 10, 1))
    assert len({event_key(NEW), event_key(REFRESH), event_key(EXPIRED)}) == 3


def test_a_batch_reduces_to_one_write_per_edge_in_first_seen_order() -> None:
    batch = [Change.of(REFRESH), Change.of(edge("new", 5, 1, "e2")), Change.of(NEW)]
    assert reduce_batch(batch) == [
        Write("e1", False, REFRESH),  # the older NEW that came later does not win
        Write("e2", False, edge("new", 5, 1, "e2")),
    ]


def test_a_tombstone_in_a_batch_deletes_before_any_later_state() -> None:
    assert reduce_batch([Change.of(NEW), Change("e1")]) == [Write("e1", True, None)]
    assert reduce_batch([Change.of(REFRESH), Change("e1"), Change.of(NEW)]) == [
        Write("e1", True, NEW)
    ]
