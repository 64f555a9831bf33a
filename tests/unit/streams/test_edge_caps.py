"""Caps: one client reaches at most so many servers within the edge TTL, and one
message brings at most so many bytes and records; what a cap stops is counted and
reported, never silently kept."""

from __future__ import annotations

from callmap.wire import DnsAnswerBatch, Endpoint, SocketBatch
from streams.caps import Caps, edge_cap_error, over_bytes, over_records
from streams.combine import REPORT_EVERY, Combiner

CLIENT = Endpoint(type="workload", namespace="shop", name="crawler", kind="Deployment")
OTHER = Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment")
TTL = 3600.0


def server(n: int) -> Endpoint:
    return Endpoint(type="ip", ip=f"203.0.113.{n}")


def call(combine: Combiner, client: Endpoint, n: int, now: float) -> list[int]:
    """The servers whose sightings went out (urgent) after one call to server ``n``."""
    slot = combine.slot("c1", client, server(n))
    combine.seen_each((slot,), now, 443, "socket-client", now)
    return [int((s.server.ip or "").rsplit(".", 1)[1]) for s in combine.urgent()]


def test_a_client_past_its_cap_reaches_no_new_server_but_keeps_its_known_ones() -> None:
    combine = Combiner(5.0, max_edges_per_client=3, edge_ttl=TTL)
    assert [call(combine, CLIENT, n, 100.0) for n in (1, 2, 3)] == [[1], [2], [3]]
    assert call(combine, CLIENT, 4, 101.0) == []
    assert call(combine, CLIENT, 5, 102.0) == []
    dropped, reported = combine.take_capped()
    assert dropped == 2 and [s.server for s in reported] == [server(4)]  # reported once
    assert call(combine, CLIENT, 1, 110.0) == []  # a repeat, held: still admitted
    assert [s.server for s in combine.due(200.0)] == [server(1)]
    assert call(combine, OTHER, 4, 103.0) == [4]  # the cap is per client


def test_a_capped_client_is_reported_again_only_after_the_report_interval() -> None:
    combine = Combiner(5.0, max_edges_per_client=1, edge_ttl=10 * REPORT_EVERY)
    call(combine, CLIENT, 1, 0.0)
    call(combine, CLIENT, 2, 1.0)
    assert len(combine.take_capped()[1]) == 1
    call(combine, CLIENT, 3, REPORT_EVERY / 2)
    assert combine.take_capped() == (1, [])
    call(combine, CLIENT, 3, REPORT_EVERY + 2.0)
    assert len(combine.take_capped()[1]) == 1


def test_servers_the_client_stopped_calling_age_out_and_make_room() -> None:
    combine = Combiner(5.0, forget_after=600.0, max_edges_per_client=2, edge_ttl=TTL)
    call(combine, CLIENT, 1, 0.0)
    call(combine, CLIENT, 2, 0.0)
    for now in range(600, int(TTL) + 1200, 600):  # server 2 goes on, server 1 stops
        call(combine, CLIENT, 2, float(now))
        combine.due(float(now) + 5.0)
    assert call(combine, CLIENT, 3, TTL + 1300.0) == [3]
    assert call(combine, CLIENT, 4, TTL + 1301.0) == []  # 2 is still called: no room


def test_without_a_cap_every_server_goes_out() -> None:
    combine = Combiner(5.0)
    assert [call(combine, CLIENT, n, 1.0) for n in range(1, 50)] == [[n] for n in range(1, 50)]
    assert combine.take_capped() == (0, [])


def test_byte_and_record_caps_say_what_they_refused() -> None:
    caps = Caps(message_bytes=1000, batch_records=2)
    assert over_bytes(1000, caps) is None
    assert over_bytes(1001, caps) == "1,001 bytes, over the cap of 1,000"
    assert over_records(DnsAnswerBatch(cluster="c1", node="n", records=()), caps) is None
    batch = SocketBatch(cluster="c1", node="n", records=(object(),) * 3)  # type: ignore[arg-type]
    assert over_records(batch, caps) == "3 records, over the cap of 2"


def test_the_edge_cap_letter_names_the_client_and_the_option() -> None:
    combine = Combiner(5.0, max_edges_per_client=1, edge_ttl=TTL)
    call(combine, CLIENT, 1, 0.0)
    call(combine, CLIENT, 2, 0.0)
    (sighting,) = combine.take_capped()[1]
    message = edge_cap_error(sighting, 1)
    assert "shop/crawler" in message and "--max-edges-per-client" in message
