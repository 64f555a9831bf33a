"""Edge identity and lifecycle."""

from __future__ import annotations

import msgspec

from callmap.wire import EdgeSighting, Endpoint, FlowHealth
from streams.edges import (
    due,
    dump_state,
    edge_id,
    expired,
    load_state,
    sighted,
)

CLIENT = Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment")
SERVER = Endpoint(type="workload", namespace="shop", name="cart", kind="Deployment")
VIA_SERVICE = Endpoint(
    type="workload", namespace="shop", name="cart", kind="Deployment", service="cart"
)


def sighting(
    ts: float, *, client: Endpoint = CLIENT, server: Endpoint = SERVER, port: int = 7070
) -> EdgeSighting:
    return EdgeSighting(
        edge_id=edge_id("c1", client, server),
        cluster="c1",
        client=client,
        server=server,
        ports=(port,),
        sources=("socket-client",),
        first_seen=ts,
        last_seen=ts,
    )


def test_identity_ignores_attributes_like_the_service_reached_through() -> None:
    assert edge_id("c1", CLIENT, SERVER) == edge_id("c1", CLIENT, VIA_SERVICE)
    assert edge_id("c1", CLIENT, SERVER) != edge_id("c2", CLIENT, SERVER)
    assert edge_id("c1", CLIENT, SERVER) != edge_id("c1", SERVER, CLIENT)
    # Stable across processes and releases: consumers key their state by it.
    assert edge_id("c1", CLIENT, SERVER) == "2bc452315accc4ece276516a2cc62ba4"


def test_sightings_of_one_edge_merge_their_attributes_and_keep_its_identity() -> None:
    state, _ = sighted(None, sighting(5.0), now=10.0, refresh_interval=300)
    state, _ = sighted(state, sighting(3.0, server=VIA_SERVICE), now=11.0, refresh_interval=300)
    state, _ = sighted(state, sighting(9.0, port=7071), now=12.0, refresh_interval=300)
    assert (state.first_seen, state.last_seen, state.count) == (3.0, 9.0, 3)
    assert state.ports == {7070, 7071} and state.server.service == "cart"
    assert state.server.name == "cart" and state.edge_id == edge_id("c1", CLIENT, SERVER)


def test_the_first_sighting_announces_new_then_refresh_at_most_once_per_interval() -> None:
    state, edge = sighted(None, sighting(1.0), now=10.0, refresh_interval=300)
    assert edge is not None and edge.event == "new" and edge.ports == (7070,)
    state, edge = sighted(state, sighting(2.0, port=8080), now=20.0, refresh_interval=300)
    assert edge is None
    assert due(state, now=200.0, refresh_interval=300) is None
    refreshed = due(state, now=310.0, refresh_interval=300)
    assert refreshed is not None and refreshed.event == "refresh"
    assert refreshed.ports == (7070, 8080) and refreshed.count == 2
    assert due(state, now=700.0, refresh_interval=300) is None  # not seen since


def test_a_sighting_after_the_interval_refreshes_at_once() -> None:
    state, _ = sighted(None, sighting(1.0), now=10.0, refresh_interval=300)
    state, edge = sighted(state, sighting(400.0), now=400.0, refresh_interval=300)
    assert edge is not None and edge.event == "refresh" and edge.last_seen == 400.0


def test_an_edge_unseen_for_the_ttl_expires() -> None:
    state, _ = sighted(None, sighting(100.0), now=100.0, refresh_interval=300)
    assert expired(state, now=150.0, ttl=100) is None
    gone = expired(state, now=200.0, ttl=100)
    assert gone is not None and gone.event == "expired" and gone.last_seen == 100.0


def test_a_workload_calling_itself_is_kept_and_flagged() -> None:
    _, edge = sighted(None, sighting(1.0, server=CLIENT), now=1.0, refresh_interval=300)
    assert edge is not None and edge.self_edge


def test_udp_ports_merge_apart_from_tcp_ports_and_reach_the_announcement() -> None:
    state, new = sighted(None, sighting(1.0, port=53), now=10.0, refresh_interval=300)
    assert new is not None and (new.ports, new.udp_ports) == ((53,), ())
    udp = msgspec.structs.replace(sighting(2.0), ports=(), udp_ports=(53, 5353))
    state, _ = sighted(state, udp, now=11.0, refresh_interval=300)
    edge = state.edge("refresh")
    assert (edge.ports, edge.udp_ports) == ((53,), (53, 5353))


def test_a_state_stored_before_udp_ports_existed_decodes_with_none() -> None:
    state, _ = sighted(None, sighting(1.0), now=10.0, refresh_interval=300)
    stored = msgspec.json.decode(dump_state(state))
    assert stored[-3] == []  # udp_ports, the last of the array until health came
    older = msgspec.json.encode(stored[:-3])
    assert load_state(older).udp_ports == set() and load_state(older).ports == {7070}


def test_a_state_stored_before_health_existed_decodes_without_any() -> None:
    state, _ = sighted(None, with_health(sighting(1.0), FlowHealth(opened=1)), 10.0, 300)
    stored = msgspec.json.decode(dump_state(state))
    assert stored[-2:] == [None, {"opened": 1}]  # told with new: only the total stays
    older = load_state(msgspec.json.encode(stored[:-2]))
    assert (older.health, older.health_total, older.ports) == (None, None, {7070})


# --- health ---------------------------------------------------------------------------


def with_health(seen: EdgeSighting, health: FlowHealth, *, alone: bool = False) -> EdgeSighting:
    if alone:
        return msgspec.structs.replace(seen, health=health, count=0, first_seen=0, last_seen=0)
    return msgspec.structs.replace(seen, health=health)


def test_each_announcement_tells_the_health_since_the_last_and_the_total_since_new() -> None:
    state, new = sighted(None, with_health(sighting(1.0), FlowHealth(opened=2)), 10.0, 300)
    assert new is not None and new.health == new.health_total == FlowHealth(opened=2)
    failing = FlowHealth(failed=3, closed=1, bytes_sent=10)
    state, none = sighted(state, with_health(sighting(0.0), failing, alone=True), 20.0, 300)
    assert none is None  # not due yet
    state, refresh = sighted(state, with_health(sighting(400.0), FlowHealth(opened=1)), 400, 300)
    assert refresh is not None and refresh.event == "refresh"
    assert refresh.health == FlowHealth(opened=1, failed=3, closed=1, bytes_sent=10)
    assert refresh.health_total == FlowHealth(opened=3, failed=3, closed=1, bytes_sent=10)
    assert state.edge("refresh").health is None  # told: the next window starts empty


def test_health_alone_changes_no_time_count_port_or_source() -> None:
    state, _ = sighted(None, sighting(5.0), now=10.0, refresh_interval=300)
    before = (state.first_seen, state.last_seen, state.count, set(state.ports))
    alone = with_health(sighting(1.0, port=9999), FlowHealth(failed=1), alone=True)
    state, _ = sighted(state, alone, now=11.0, refresh_interval=300)
    assert (state.first_seen, state.last_seen, state.count, state.ports) == before
    assert state.health == FlowHealth(failed=1)


def test_an_edge_with_only_health_since_its_last_announcement_is_refreshed() -> None:
    """Calls that now only fail make no sighting: the refresh still tells it."""
    state, _ = sighted(None, sighting(5.0), now=10.0, refresh_interval=300)
    assert due(state, 400.0, 300) is None  # nothing to tell
    state, _ = sighted(state, with_health(sighting(1.0), FlowHealth(failed=2), alone=True), 20, 300)
    refresh = due(state, 400.0, 300)
    assert refresh is not None and refresh.health == FlowHealth(failed=2)
    assert refresh.last_seen == 5.0


def test_state_survives_its_table_encoding() -> None:
    state, _ = sighted(None, sighting(1.0), now=10.0, refresh_interval=300)
    state, _ = sighted(state, sighting(2.0, server=VIA_SERVICE), now=11.0, refresh_interval=300)
    assert load_state(dump_state(state)) == state
