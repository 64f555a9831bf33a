"""One raw message in: sightings out, late events set aside, identities applied."""

from __future__ import annotations

from helpers.streamrecords import CLUSTER, answer, pod, service, socket

from callmap.counters import Counters
from callmap.errors import WireDecodeError
from callmap.wire import PODS, SERVICES, DnsAnswerBatch, SocketBatch, encode
from streams.resolvestage import Identities, ResolveSettings, ResolveStage


def stage() -> tuple[ResolveStage, Identities, Counters]:
    counters = Counters()
    settings = ResolveSettings(grace=60)
    identities = Identities(settings, counters)
    return ResolveStage(identities, settings, counters), identities, counters


def test_identity_messages_build_one_store_per_cluster_and_tombstones_forget() -> None:
    _, identities, _ = stage()
    identities.apply(PODS.name, b"uid-f", encode(pod("frontend-0", "10.1.0.10", uid="uid-f")))
    store = identities.resolver(CLUSTER).store
    assert store.holder("10.1.0.10", 1.0) is not None
    identities.apply(PODS.name, b"uid-f", None)
    assert store.holder("10.1.0.10", 1.0) is None


def test_a_malformed_identity_message_raises_the_wire_error() -> None:
    _, identities, _ = stage()
    try:
        identities.apply(SERVICES.name, b"c1/shop/x", b'{"v":1}')
    except WireDecodeError as error:
        assert error.topic == SERVICES.name
    else:
        raise AssertionError("expected a WireDecodeError")


def test_a_batch_yields_folded_sightings_and_sets_late_events_aside() -> None:
    raw, identities, counters = stage()
    identities.apply(PODS.name, b"f", encode(pod("frontend-0", "10.1.0.10", uid="f")))
    identities.apply(
        SERVICES.name, b"c1/shop/cart", encode(service("cart", "10.96.4.2", "cartservice"))
    )
    batch = DnsAnswerBatch(
        cluster=CLUSTER,
        node="node-a",
        records=(
            answer("cart.shop.svc.cluster.local", "10.1.0.10", "10.96.4.2", ts=1.0),
            answer("cart.shop.svc.cluster.local", "10.1.0.10", "10.96.4.2", ts=2.0),
            answer("api.stripe.com", "10.1.0.77", "203.0.113.1", ts=3.0),
        ),
    )
    sightings, pending = raw.batch(batch, now=1000.0, final=False)
    (sighting,) = sightings
    assert (sighting.count, sighting.first_seen, sighting.last_seen) == (2, 1.0, 2.0)
    assert pending is not None and pending.due == 1060.0 and len(pending.dns) == 1
    assert counters.events == {"resolved": 2, "late": 1}

    sightings, still = raw.batch(pending, now=1060.0, final=True)
    assert still is None and sightings[0].client.ip == "10.1.0.77"
    assert counters.events["unresolved"] == 1 and counters.events["resolved_after_wait"] == 1


def test_a_late_identity_that_arrives_within_the_grace_period_resolves_fully() -> None:
    raw, identities, _ = stage()
    batch = SocketBatch(
        cluster=CLUSTER, node="node-a", records=(socket("10.1.0.10", 40000, "10.1.0.11", 7070),)
    )
    _, pending = raw.batch(batch, now=100.0, final=False)
    assert pending is not None
    identities.apply(PODS.name, b"f", encode(pod("frontend-0", "10.1.0.10", uid="f")))
    identities.apply(PODS.name, b"c", encode(pod("cartservice-0", "10.1.0.11", uid="c")))
    (sighting,), _ = raw.batch(pending, now=160.0, final=True)
    assert (sighting.client.name, sighting.server.name) == ("frontend", "cartservice")


def test_a_connection_to_an_address_given_under_two_names_is_counted_as_ambiguous() -> None:
    raw, identities, counters = stage()
    identities.apply(PODS.name, b"f", encode(pod("frontend-0", "10.1.0.10", uid="f")))
    answers = DnsAnswerBatch(
        cluster=CLUSTER,
        node="node-a",
        records=(
            answer("img.example.com", "10.1.0.10", "198.51.100.80", ts=1.0, ttl=60),
            answer("api.example.com", "10.1.0.10", "198.51.100.80", ts=2.0, ttl=60),
        ),
    )
    raw.batch(answers, now=1000.0, final=False)
    connection = socket("10.1.0.10", 40000, "198.51.100.80", 443, ts=3.0, pod_uid="f")
    raw.batch(
        SocketBatch(cluster=CLUSTER, node="node-a", records=(connection,)), 1001.0, final=False
    )
    assert counters.events["ambiguous_dns_name"] == 1
