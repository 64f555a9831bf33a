"""A cluster's edge as the hub names it: both ends in their clusters."""

from __future__ import annotations

import pytest
from helpers.clustersets import edge, pod, service, store, workload

from aggregate.clusterset import clusterset_from_groups
from aggregate.globalize import Globalizer
from callmap.counters import StageCounters
from callmap.wire import Endpoint
from streams.identity import IdentityStore

# east and west are peered; north's ranges overlap east's and it peers with nobody.
STORES = {
    "east": store(pod("east", "frontend-1", "10.0.0.5", "frontend")),
    "west": store(
        pod("west", "api-1", "10.1.0.7", "api"),
        service("west", "api", "10.96.1.1", ("api",), exported=True),
        pod("west", "db-0", "10.1.0.9", "db", hostname="db-0", subdomain="db"),
        service("west", "db", "10.96.1.2", ("db",), exported=True),
    ),
    "north": store(
        pod("north", "api-1", "10.1.0.7", "api"),  # the same address as west's api pod
        service("north", "api", "10.96.1.1", ("api",), exported=True),
        service("north", "quiet", "10.96.1.9", ("quiet",), exported=False),
    ),
}


@pytest.fixture
def globalizer() -> Globalizer:
    return Globalizer(STORES, clusterset_from_groups([["east", "west"]]), StageCounters())


def ip(address: str) -> Endpoint:
    return Endpoint(type="ip", ip=address)


def test_named_ends_stay_in_the_edges_cluster(globalizer: Globalizer) -> None:
    pairs = globalizer.pairs("east", edge("east", workload("frontend"), workload("cart")))
    assert pairs == [(workload("frontend", "east"), workload("cart", "east"))]


def test_a_peers_pod_address_is_that_peers_workload(globalizer: Globalizer) -> None:
    pairs = globalizer.pairs("east", edge("east", workload("frontend"), ip("10.1.0.7")))
    assert pairs == [(workload("frontend", "east"), workload("api", "west"))]


def test_a_peers_service_address_is_each_workload_behind_it(globalizer: Globalizer) -> None:
    pairs = globalizer.pairs("east", edge("east", workload("frontend"), ip("10.96.1.1")))
    assert pairs == [(workload("frontend", "east"), workload("api", "west", service="api"))]


def test_an_address_is_never_matched_in_a_cluster_the_client_cannot_reach(
    globalizer: Globalizer,
) -> None:
    # north has a pod at 10.1.0.7 too, but north is no peer of west's or east's.
    pairs = globalizer.pairs("north", edge("north", workload("x"), ip("10.1.0.7")))
    assert pairs == [(workload("x", "north"), workload("api", "north"))]
    pairs = globalizer.pairs("north", edge("north", workload("x"), ip("10.1.0.99")))
    assert pairs == [(workload("x", "north"), Endpoint(type="ip", ip="10.1.0.99", cluster="north"))]


def test_an_address_two_peers_know_stays_an_address() -> None:
    counters = StageCounters()
    globalizer = Globalizer(STORES, clusterset_from_groups([["east", "west", "north"]]), counters)
    pairs = globalizer.pairs("east", edge("east", workload("frontend"), ip("10.1.0.7")))
    assert pairs == [
        (workload("frontend", "east"), Endpoint(type="ip", ip="10.1.0.7", cluster="east"))
    ]
    assert counters.dropped["ip_ambiguous"] == 1


def test_a_server_side_edge_names_a_peers_client(globalizer: Globalizer) -> None:
    # west's pipeline saw east's frontend only as an address calling its api.
    pairs = globalizer.pairs("west", edge("west", ip("10.0.0.5"), workload("api")))
    assert pairs == [(workload("frontend", "east"), workload("api", "west"))]
    assert (
        globalizer.client_cluster("west", edge("west", ip("10.0.0.5"), workload("api"))) == "east"
    )


def test_a_service_address_is_no_client(globalizer: Globalizer) -> None:
    pairs = globalizer.pairs("east", edge("east", ip("10.96.1.1"), workload("frontend")))
    assert pairs[0][0] == Endpoint(type="ip", ip="10.96.1.1", cluster="east")


def test_a_clusterset_name_is_the_exported_service_in_every_exporting_cluster(
    globalizer: Globalizer,
) -> None:
    server = Endpoint(type="external", dns_name="api.shop.svc.clusterset.local", ip="10.97.0.1")
    pairs = globalizer.pairs("east", edge("east", workload("frontend"), server))
    assert [server for _, server in pairs] == [
        workload("api", "north", service="api"),
        workload("api", "west", service="api"),
    ]


def test_a_headless_clusterset_name_is_that_pod_in_that_cluster(globalizer: Globalizer) -> None:
    server = Endpoint(type="external", dns_name="db-0.west.db.shop.svc.clusterset.local")
    pairs = globalizer.pairs("east", edge("east", workload("frontend"), server))
    assert pairs == [(workload("frontend", "east"), workload("db", "west", service="db"))]


def test_unexported_or_unknown_clusterset_names_stay_external() -> None:
    counters = StageCounters()
    globalizer = Globalizer(STORES, clusterset_from_groups([]), counters)
    for name in ("quiet.shop.svc.clusterset.local", "nope.shop.svc.clusterset.local"):
        server = Endpoint(type="external", dns_name=name)
        pairs = globalizer.pairs("east", edge("east", workload("frontend"), server))
        assert pairs == [(workload("frontend", "east"), server)]  # externals: no cluster
        assert globalizer.unresolved(pairs)
    assert counters.dropped["clusterset_name_unexported"] == 2


def test_other_externals_belong_to_no_cluster(globalizer: Globalizer) -> None:
    server = Endpoint(type="external", dns_name="api.example.com")
    pairs = globalizer.pairs("east", edge("east", workload("frontend"), server))
    assert pairs == [(workload("frontend", "east"), server)]
    assert not globalizer.unresolved(pairs)


def test_identities_that_arrive_later_name_more() -> None:
    stores: dict[str, IdentityStore] = {"east": store(), "west": store()}
    globalizer = Globalizer(stores, clusterset_from_groups([["east", "west"]]), StageCounters())
    call = edge("east", workload("frontend"), ip("10.1.0.7"))
    assert globalizer.unresolved(globalizer.pairs("east", call))
    stores["west"].put_pod("w-api", pod("west", "api-1", "10.1.0.7", "api"))
    assert globalizer.pairs("east", call)[0][1] == workload("api", "west")
