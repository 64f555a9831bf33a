"""Peer sets and MCS names: which clusters an address may be looked up in."""

from __future__ import annotations

import pytest

from aggregate.clusterset import (
    ClusterSetError,
    ClusterSetPod,
    ClusterSetService,
    classify_clusterset_name,
    clusterset_from_document,
    clusterset_from_groups,
)


def test_peering_is_symmetric_and_a_cluster_reaches_itself_first() -> None:
    clusterset = clusterset_from_document(
        {"clusters": [{"name": "east", "peers": ["west"]}, {"name": "west"}, {"name": "north"}]}
    )
    assert clusterset.reachable("east") == ("east", "west")
    assert clusterset.reachable("west") == ("west", "east")
    assert clusterset.reachable("north") == ("north",)
    assert clusterset.reachable("undeclared") == ("undeclared",)


def test_overlapping_clusters_cannot_peer() -> None:
    document = {
        "clusters": [
            {"name": "east", "peers": ["west"]},
            {"name": "west", "overlap_with": ["east"]},
        ]
    }
    with pytest.raises(ClusterSetError, match="overlapping clusters cannot be peers"):
        clusterset_from_document(document)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"clusters": "east"},
        {"clusters": [{"peers": ["west"]}]},
        {"clusters": [{"name": "east"}, {"name": "east"}]},
        {"clusters": [{"name": "east", "peers": ["east"]}]},
        {"clusters": [{"name": "east", "peers": ["nowhere"]}]},
        {"clusters": [{"name": "east", "peers": "west"}, {"name": "west"}]},
    ],
)
def test_declarations_that_cannot_be_right_are_refused(document: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ClusterSetError):
        clusterset_from_document(document)


def test_peer_groups_from_the_command_line() -> None:
    clusterset = clusterset_from_groups([["east", "west", "south"], ["north", "west"]])
    assert clusterset.reachable("west") == ("west", "east", "north", "south")
    assert clusterset.reachable("east") == ("east", "south", "west")
    assert clusterset.reachable("north") == ("north", "west")


@pytest.mark.parametrize(
    ("name", "meaning"),
    [
        ("api.shop.svc.clusterset.local", ClusterSetService("shop", "api")),
        ("db-0.west.db.shop.svc.clusterset.local", ClusterSetPod("shop", "db", "west", "db-0")),
        ("api.shop.svc.cluster.local", None),
        ("shop.svc.clusterset.local", None),
        ("x.a.b.api.shop.svc.clusterset.local", None),
        ("api.shop.pod.clusterset.local", None),
        ("api..svc.clusterset.local", None),
        ("clusterset.local", None),
        ("example.com", None),
    ],
)
def test_mcs_names(name: str, meaning: object) -> None:
    assert classify_clusterset_name(name) == meaning
