"""The combiner: news goes to an edge's owner at once, repeats once per interval."""

from __future__ import annotations

from callmap.wire import Endpoint, FlowHealth
from streams.combine import Combiner, Slot
from streams.edges import edge_id

CLIENT = Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment")
SERVER = Endpoint(type="workload", namespace="shop", name="cart", kind="Deployment")
VIA_SERVICE = Endpoint(
    type="workload", namespace="shop", name="cart", kind="Deployment", service="cart"
)


def combiner(interval: float = 5.0, **options: float) -> tuple[Combiner, Slot]:
    combine = Combiner(interval, **options)  # type: ignore[arg-type]
    return combine, combine.slot("c1", CLIENT, SERVER)


def test_the_first_sighting_of_a_pair_goes_out_with_its_batch_folded() -> None:
    combine, slot = combiner()
    combine.seen(slot, 5.0, 7070, "socket-client", now=100.0)
    combine.seen(slot, 3.0, None, "dns", now=100.0)
    combine.seen(slot, 9.0, 7071, "socket-client", now=100.0)
    (sighting,) = combine.urgent()
    assert sighting.edge_id == edge_id("c1", CLIENT, SERVER)
    assert (sighting.first_seen, sighting.last_seen, sighting.count) == (3.0, 9.0, 3)
    assert sighting.ports == (7070, 7071) and sighting.sources == ("dns", "socket-client")
    assert combine.urgent() == []


def test_repeats_are_held_and_go_out_once_the_interval_has_passed() -> None:
    combine, slot = combiner(interval=5.0)
    combine.seen(slot, 1.0, 7070, "socket-client", now=100.0)
    combine.urgent()
    combine.seen(slot, 2.0, 7070, "socket-client", now=101.0)
    combine.seen(slot, 4.0, 7070, "socket-client", now=103.0)
    assert combine.urgent() == [] and combine.held == 1
    assert combine.due(now=105.9) == []
    (repeat,) = combine.due(now=106.0)
    assert (repeat.first_seen, repeat.last_seen, repeat.count) == (2.0, 4.0, 2)
    assert repeat.ports == (7070,) and repeat.sources == ("socket-client",)
    assert combine.held == 0 and combine.due(now=200.0) == []


def test_a_new_port_or_source_goes_out_at_once_with_the_held_repeats() -> None:
    combine, slot = combiner()
    combine.seen(slot, 1.0, 7070, "socket-client", now=100.0)
    combine.urgent()
    combine.seen(slot, 2.0, 7070, "socket-client", now=101.0)
    combine.seen(slot, 3.0, 8080, "socket-client", now=101.0)
    (news,) = combine.urgent()
    assert news.ports == (7070, 8080) and news.count == 2 and news.first_seen == 2.0
    combine.seen(slot, 4.0, None, "dns", now=102.0)
    (news,) = combine.urgent()
    assert news.sources == ("dns", "socket-client") and news.count == 1
    assert combine.due(now=1000.0) == []


def test_a_udp_port_is_news_of_its_own_even_when_the_same_tcp_port_is_known() -> None:
    combine, slot = combiner()
    combine.seen(slot, 1.0, 53, "socket-client", now=100.0)
    combine.urgent()
    combine.seen_udp((slot,), 2.0, 53, "socket-client", now=101.0)
    (news,) = combine.urgent()
    assert (news.ports, news.udp_ports) == ((53,), (53,))
    combine.seen_udp((slot,), 3.0, 53, "socket-client", now=102.0)
    assert combine.urgent() == []  # a repeat: held
    (repeat,) = combine.due(now=107.0)
    assert (repeat.count, repeat.ports, repeat.udp_ports) == (1, (53,), (53,))


def test_a_forgotten_pair_forgets_its_udp_ports_too() -> None:
    combine, slot = combiner(forget_after=60.0)
    combine.seen_udp((slot,), 1.0, 8125, "socket-client", now=100.0)
    combine.urgent()
    combine.due(now=200.0)  # idle since 100: forgotten
    combine.seen(slot, 2.0, 7070, "socket-client", now=201.0)
    (news,) = combine.urgent()
    assert (news.ports, news.udp_ports) == ((7070,), ())


def test_pairs_that_differ_in_attributes_only_are_told_apart_for_the_owner_to_merge() -> None:
    combine, slot = combiner()
    other = combine.slot("c1", CLIENT, VIA_SERVICE)
    assert other is not slot and other.edge_id == slot.edge_id
    assert combine.slot("c1", CLIENT, SERVER) is slot
    combine.seen(slot, 1.0, None, "dns", now=1.0)
    combine.seen(other, 1.0, None, "dns", now=1.0)
    assert [s.server.service for s in combine.urgent()] == [None, "cart"]


def test_with_no_interval_every_sighting_goes_out_at_once() -> None:
    combine, slot = combiner(interval=0)
    for ts in (1.0, 2.0):
        combine.seen(slot, ts, None, "dns", now=ts)
        (sighting,) = combine.urgent()
        assert sighting.last_seen == ts and sighting.count == 1


def test_an_idle_pair_is_forgotten_and_its_next_sighting_is_news_again() -> None:
    combine, slot = combiner(interval=5.0, forget_after=60.0)
    combine.seen(slot, 1.0, 7070, "socket-client", now=100.0)
    combine.urgent()
    combine.due(now=200.0)
    assert len(combine) == 0
    combine.seen(slot, 200.0, 7070, "socket-client", now=200.0)
    (again,) = combine.urgent()
    assert again.ports == (7070,) and again.count == 1


def test_beyond_max_edges_the_least_recently_active_are_forgotten() -> None:
    combine = Combiner(5.0, forget_after=60.0, max_edges=2)
    servers = [Endpoint(type="ip", ip=f"10.0.0.{n}") for n in range(3)]
    for n, server in enumerate(servers):
        slot = combine.slot("c1", CLIENT, server)
        combine.seen(slot, 1.0, 80, "socket-client", now=float(n))
    combine.urgent()
    combine.due(now=20.0)
    assert len(combine) == 2
    assert combine.slot("c1", CLIENT, servers[0]).known is False  # a new slot


def test_drain_hands_over_everything_held() -> None:
    combine, slot = combiner()
    combine.seen(slot, 1.0, None, "dns", now=1.0)
    combine.urgent()
    combine.seen(slot, 2.0, None, "dns", now=2.0)
    (held,) = combine.drain()
    assert held.count == 1 and held.last_seen == 2.0
    assert combine.drain() == [] and combine.due(now=100.0) == []


# --- health ---------------------------------------------------------------------------


def test_health_goes_out_with_the_pairs_next_sighting() -> None:
    combine, slot = combiner()
    combine.seen(slot, 1.0, 7070, "socket-client", now=100.0)
    combine.add_health((slot,), FlowHealth(opened=1), now=100.0)
    combine.add_health((slot,), FlowHealth(opened=1, failed=1), now=100.5)
    (sighting,) = combine.urgent()
    assert sighting.count == 1 and sighting.health == FlowHealth(opened=2, failed=1)
    assert combine.held == 0


def test_health_alone_is_held_like_a_repeat_and_goes_out_as_a_sighting_of_none() -> None:
    combine, slot = combiner(interval=5.0)
    combine.seen(slot, 1.0, 7070, "socket-client", now=100.0)
    combine.urgent()
    combine.add_health((slot,), FlowHealth(closed=1, bytes_sent=300), now=101.0)
    assert combine.urgent() == [] and combine.held == 1
    assert combine.due(now=105.9) == []
    (alone,) = combine.due(now=106.0)
    assert alone.count == 0 and alone.health == FlowHealth(closed=1, bytes_sent=300)
    assert alone.ports == (7070,)  # what the owner knows; a count of 0 changes nothing
    assert combine.held == 0 and combine.due(now=200.0) == []


def test_held_health_is_drained_and_keeps_its_pair_from_being_forgotten() -> None:
    combine, slot = combiner(interval=5.0, forget_after=10.0)
    combine.add_health((slot,), FlowHealth(failed=1), now=100.0)
    assert len(combine) == 1
    (alone,) = combine.drain()
    assert alone.health == FlowHealth(failed=1) and alone.count == 0
