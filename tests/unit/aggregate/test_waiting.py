"""New edges the hub cannot name yet wait for identities, for the grace period at most."""

from __future__ import annotations

from helpers.clustersets import edge, workload

from aggregate.waiting import Waiting
from callmap.wire import Endpoint

UNNAMED = edge("east", workload("cart"), Endpoint(type="ip", ip="10.1.0.5"), edge_id="e1")


def test_an_edge_waits_from_when_it_was_first_held_not_from_its_latest_version() -> None:
    waiting = Waiting(grace=60.0)
    assert waiting.wait("east/e1", "east", UNNAMED, now=100.0)
    assert waiting.wait("east/e1", "east", UNNAMED, now=150.0)
    assert not waiting.wait("east/e1", "east", UNNAMED, now=160.0)
    assert "east/e1" not in waiting


def test_the_latest_version_is_the_one_announced_when_the_wait_ends() -> None:
    waiting = Waiting(grace=60.0)
    later = edge("east", workload("cart"), UNNAMED.server, edge_id="e1", count=5)
    waiting.wait("east/e1", "east", UNNAMED, now=100.0)
    waiting.wait("east/e1", "east", later, now=120.0)
    assert waiting.take_due(now=159.0) == []
    [due] = waiting.take_due(now=160.0)
    assert (due.cluster, due.edge.count) == ("east", 5)
    assert len(waiting) == 0


def test_a_named_or_expired_edge_waits_no_more() -> None:
    waiting = Waiting(grace=60.0)
    waiting.wait("east/e1", "east", UNNAMED, now=100.0)
    waiting.drop("east/e1")
    assert waiting.waiters() == []
    assert waiting.take_due(now=1000.0) == []


def test_no_grace_means_no_wait() -> None:
    assert not Waiting(grace=0.0).wait("east/e1", "east", UNNAMED, now=100.0)
