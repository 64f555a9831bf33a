"""Global edges' lifecycle: new once, refresh when seen, expired when no cluster holds them."""

from __future__ import annotations

import msgspec
import pytest
from helpers.clustersets import edge, workload

from aggregate.ledger import Ledger, LedgerSettings, global_edge_id, source_key
from callmap.counters import Counters
from callmap.wire import Edge, Endpoint, FlowHealth

FRONTEND = workload("frontend", "east")
API = workload("api", "west", service="api")
API_POD = workload("api", "west")
PAIR = (FRONTEND, API)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(LedgerSettings(refresh_interval=60.0, ttl=3600.0), Counters())


def events(announced: list[Edge]) -> list[tuple[str, str, str]]:
    return [(e.event, e.client.name or "", e.server.name or "") for e in announced]


def source(
    last_seen: float = 100.0, count: int = 1, edge_id: str = "e1", event: str = "new"
) -> Edge:
    return edge(
        "east",
        workload("frontend"),
        Endpoint(type="ip", ip="10.1.0.7"),
        edge_id=edge_id,
        event=event,
        last_seen=last_seen,
        count=count,
    )


def test_the_first_contribution_announces_new_with_both_clusters(ledger: Ledger) -> None:
    (announced,) = ledger.contribute("east/e1", source(), [PAIR], now=1000.0)
    assert announced.event == "new" and announced.cluster == "east"
    assert (announced.client.cluster, announced.server.cluster) == ("east", "west")
    assert announced.edge_id == global_edge_id(FRONTEND, API)


def test_global_ids_differ_by_cluster_and_ignore_attributes() -> None:
    assert global_edge_id(FRONTEND, API) == global_edge_id(FRONTEND, API_POD)
    elsewhere = msgspec.structs.replace(API, cluster="north")
    assert global_edge_id(FRONTEND, API) != global_edge_id(FRONTEND, elsewhere)
    assert source_key("east", "e1") != source_key("west", "e1")


def test_duplicates_and_replays_say_nothing(ledger: Ledger) -> None:
    ledger.contribute("east/e1", source(), [PAIR], now=1000.0)
    assert ledger.contribute("east/e1", source(), [PAIR], now=5000.0) == []


def test_a_refresh_at_most_once_per_interval_and_only_when_seen_again(ledger: Ledger) -> None:
    ledger.contribute("east/e1", source(100.0), [PAIR], now=1000.0)
    assert ledger.contribute("east/e1", source(130.0, 2), [PAIR], now=1030.0) == []
    assert events(ledger.refresh_due(1059.0)) == []
    (refresh,) = ledger.refresh_due(1061.0)
    assert (refresh.event, refresh.last_seen, refresh.count) == ("refresh", 130.0, 2)
    assert ledger.refresh_due(2000.0) == []  # not seen since


def test_a_call_seen_from_both_clusters_is_one_edge(ledger: Ledger) -> None:
    ledger.contribute("east/e1", source(count=3), [PAIR], now=1000.0)
    server_side = edge(
        "west",
        Endpoint(type="ip", ip="10.0.0.5"),
        workload("api"),
        edge_id="w9",
        count=4,
        last_seen=200.0,
    )
    assert ledger.contribute("west/w9", server_side, [(FRONTEND, API_POD)], now=1001.0) == []
    (refresh,) = ledger.refresh_due(1100.0)
    assert refresh.count == 7 and refresh.last_seen == 200.0


def test_expired_only_when_every_contributing_source_expired(ledger: Ledger) -> None:
    ledger.contribute("east/e1", source(), [PAIR], now=1000.0)
    ledger.contribute("west/w9", source(edge_id="w9"), [PAIR], now=1000.0)
    assert ledger.withdraw("east/e1") == []
    assert events(ledger.withdraw("west/w9")) == [("expired", "frontend", "api")]
    assert ledger.edges == {}


def test_a_source_that_now_means_another_edge_moves_there(ledger: Ledger) -> None:
    unresolved = (FRONTEND, Endpoint(type="ip", ip="10.1.0.7", cluster="east"))
    ledger.contribute("east/e1", source(), [unresolved], now=1000.0)
    announced = ledger.contribute("east/e1", source(), [PAIR], now=1010.0)
    assert sorted(e.event for e in announced) == ["expired", "new"]
    assert [e.server.type for e in announced if e.event == "expired"] == ["ip"]


def test_a_quiet_cluster_keeps_its_edges_for_the_ttl_and_touches_no_other(ledger: Ledger) -> None:
    ledger.contribute("east/e1", source(last_seen=100.0), [PAIR], now=100.0)
    other = (workload("web", "north"), workload("db", "north"))
    ledger.contribute("north/n1", source(last_seen=3000.0, edge_id="n1"), [other], now=3000.0)
    assert ledger.expire_stale(3699.0) == []
    assert events(ledger.expire_stale(3701.0)) == [("expired", "frontend", "api")]
    assert len(ledger.edges) == 1


def test_a_restart_replays_silently_and_never_announces_new_twice(ledger: Ledger) -> None:
    (announced,) = ledger.contribute("east/e1", source(), [PAIR], now=1000.0)
    gone_pair = (FRONTEND, workload("old", "west"))
    (gone,) = ledger.contribute("east/e2", source(edge_id="e2"), [gone_pair], now=1000.0)

    restarted = Ledger(ledger.settings, Counters())
    restarted.replaying = True
    restarted.restore(announced, announced_at=1000.0)
    restarted.restore(gone, announced_at=1000.0)
    # The replay: e1 went new -> expired -> new again in east; e2 expired; e3 is new.
    assert restarted.contribute("east/e1", source(), [PAIR], now=2000.0) == []
    assert restarted.withdraw("east/e1") == []
    assert restarted.contribute("east/e1", source(150.0), [PAIR], now=2000.0) == []
    assert restarted.contribute("east/e2", source(edge_id="e2"), [gone_pair], now=2000.0) == []
    assert restarted.withdraw("east/e2") == []
    third = (FRONTEND, workload("cart", "east"))
    assert restarted.contribute("east/e3", source(edge_id="e3"), [third], now=2000.0) == []
    settled = events(restarted.settle(2000.0))
    assert sorted(settled) == [
        ("expired", "frontend", "old"),
        ("new", "frontend", "cart"),
        ("refresh", "frontend", "api"),
    ]


def test_an_edge_that_came_and_went_within_a_replay_is_never_announced(ledger: Ledger) -> None:
    ledger.replaying = True
    ledger.contribute("east/e1", source(), [PAIR], now=1000.0)
    ledger.withdraw("east/e1")
    assert ledger.settle(1000.0) == [] and ledger.edges == {}


def test_announced_means_restored_or_announced_not_contributed_in_a_replay(
    ledger: Ledger,
) -> None:
    (announced,) = ledger.contribute("east/e1", source(), [PAIR], now=1000.0)
    other = (FRONTEND, workload("cart", "east"))
    assert ledger.announced([PAIR]) and ledger.announced([other, PAIR])
    assert not ledger.announced([other]) and not ledger.announced([])
    restarted = Ledger(ledger.settings, Counters())
    restarted.replaying = True
    restarted.restore(announced, announced_at=1000.0)
    restarted.contribute("east/e2", source(edge_id="e2"), [other], now=2000.0)
    assert restarted.announced([PAIR]) and not restarted.announced([other])


def test_an_expired_edge_read_back_is_not_restored(ledger: Ledger) -> None:
    (announced,) = ledger.contribute("east/e1", source(), [PAIR], now=1000.0)
    (expired,) = ledger.withdraw("east/e1")
    restarted = Ledger(ledger.settings, Counters())
    restarted.replaying = True
    restarted.restore(announced, 1000.0)
    restarted.restore(expired, 1001.0)
    assert restarted.settle(2000.0) == []


def test_udp_ports_are_carried_and_merged_as_tcp_ports_are(ledger: Ledger) -> None:
    udp_only = msgspec.structs.replace(source(), ports=(), udp_ports=(53,))
    (announced,) = ledger.contribute("east/e1", udp_only, [PAIR], now=1000.0)
    assert (announced.ports, announced.udp_ports) == ((), (53,))
    server_side = edge(
        "west", Endpoint(type="ip", ip="10.0.0.5"), workload("api"), edge_id="w9", last_seen=200.0
    )
    mixed = msgspec.structs.replace(server_side, ports=(8080,), udp_ports=(5353, 53))
    ledger.contribute("west/w9", mixed, [(FRONTEND, API_POD)], now=1001.0)
    (refresh,) = ledger.refresh_due(1100.0)
    assert (refresh.ports, refresh.udp_ports) == ((8080,), (53, 5353))

    restarted = Ledger(ledger.settings, Counters())
    restarted.restore(refresh, announced_at=1100.0)
    (again,) = restarted.contribute("east/e1", source(300.0), [PAIR], now=1200.0)
    assert (again.ports, again.udp_ports) == ((8080,), (53, 5353))


def with_health(source_edge: Edge, lately: FlowHealth, total: FlowHealth) -> Edge:
    return msgspec.structs.replace(source_edge, health=lately, health_total=total)


def test_a_global_edge_tells_each_window_of_its_source_once(ledger: Ledger) -> None:
    first = with_health(source(100.0), FlowHealth(opened=2), FlowHealth(opened=2))
    (announced,) = ledger.contribute("east/e1", first, [PAIR], now=1000.0)
    assert announced.health == announced.health_total == FlowHealth(opened=2)
    # Two windows of the source before the global edge may refresh: both are told.
    failing = with_health(first, FlowHealth(failed=3), FlowHealth(opened=2, failed=3))
    assert ledger.contribute("east/e1", failing, [PAIR], now=1030.0) == []
    later = with_health(source(140.0, 2), FlowHealth(opened=1), FlowHealth(opened=3, failed=3))
    assert ledger.contribute("east/e1", later, [PAIR], now=1040.0) == []
    (refresh,) = ledger.refresh_due(1061.0)
    assert refresh.health == FlowHealth(opened=1, failed=3)
    assert refresh.health_total == FlowHealth(opened=3, failed=3)
    # Seen again with no health since: the refresh has no window to repeat.
    quiet = msgspec.structs.replace(later, last_seen=200.0, count=3, health=None)
    (told,) = ledger.contribute("east/e1", quiet, [PAIR], now=1200.0)
    assert told.health is None and told.health_total == FlowHealth(opened=3, failed=3)


def test_a_window_with_only_failures_is_a_reason_to_refresh(ledger: Ledger) -> None:
    first = with_health(source(100.0), FlowHealth(opened=2), FlowHealth(opened=2))
    ledger.contribute("east/e1", first, [PAIR], now=1000.0)
    failing = with_health(first, FlowHealth(failed=1), FlowHealth(opened=2, failed=1))
    ledger.contribute("east/e1", failing, [PAIR], now=1010.0)  # no sighting, same last_seen
    (refresh,) = ledger.refresh_due(1061.0)
    assert refresh.health == FlowHealth(failed=1) and refresh.last_seen == 100.0


def test_health_counts_from_the_clients_cluster_only(ledger: Ledger) -> None:
    east = with_health(source(), FlowHealth(opened=4, resets=1), FlowHealth(opened=9, resets=1))
    ledger.contribute("east/e1", east, [PAIR], now=1000.0)
    # West's server nodes tracked the same connections: counting them again would double.
    server_side = edge(
        "west", Endpoint(type="ip", ip="10.0.0.5"), workload("api"), edge_id="w9", last_seen=200.0
    )
    west = with_health(server_side, FlowHealth(opened=4, resets=1), FlowHealth(opened=9, resets=1))
    ledger.contribute("west/w9", west, [(FRONTEND, API_POD)], now=1001.0)
    (refresh,) = ledger.refresh_due(1100.0)
    assert refresh.count == 2  # both sides' sightings add up, as before
    assert refresh.health is None  # east's window was told with new; west's is not counted
    assert refresh.health_total == FlowHealth(opened=9, resets=1)


def test_health_of_several_source_edges_of_the_clients_cluster_adds_up(ledger: Ledger) -> None:
    one = with_health(source(), FlowHealth(opened=1), FlowHealth(opened=5))
    other = with_health(source(edge_id="e2"), FlowHealth(failed=2), FlowHealth(opened=1, failed=2))
    ledger.contribute("east/e1", one, [PAIR], now=1000.0)
    ledger.contribute("east/e2", other, [PAIR], now=1001.0)
    (refresh,) = ledger.refresh_due(1100.0)
    assert refresh.health == FlowHealth(failed=2)
    assert refresh.health_total == FlowHealth(opened=6, failed=2)


def test_the_cluster_the_hub_knows_a_source_by_decides(ledger: Ledger) -> None:
    aliased = msgspec.structs.replace(source(), cluster="east-1")  # the record names it so
    counted = with_health(aliased, FlowHealth(opened=1), FlowHealth(opened=1))
    (announced,) = ledger.contribute("east/e1", counted, [PAIR], now=1000.0, cluster="east")
    assert announced.health_total == FlowHealth(opened=1)


def test_a_replay_tells_no_window_again(ledger: Ledger) -> None:
    first = with_health(source(), FlowHealth(failed=3), FlowHealth(opened=1, failed=3))
    (announced,) = ledger.contribute("east/e1", first, [PAIR], now=1000.0)
    restarted = Ledger(ledger.settings, Counters())
    restarted.replaying = True
    restarted.restore(announced, announced_at=1000.0)
    restarted.contribute("east/e1", with_health(source(150.0), *_health_of(first)), [PAIR], 2000.0)
    (refresh,) = restarted.settle(2000.0)
    assert refresh.health is None  # told before the restart
    assert refresh.health_total == FlowHealth(opened=1, failed=3)


def _health_of(one: Edge) -> tuple[FlowHealth, FlowHealth]:
    assert one.health is not None and one.health_total is not None
    return one.health, one.health_total
