"""The wire contract's encoding: what producers write and consumers accept."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callmap.errors import WireDecodeError
from callmap.wire import (
    ALL_TOPICS,
    DNS,
    EDGES,
    PODS,
    RECORD_TYPES,
    DnsAnswer,
    DnsAnswerBatch,
    Edge,
    EdgeSighting,
    Endpoint,
    PendingBatch,
    PodIdentity,
    Record,
    SightingBatch,
    SocketBatch,
    SocketObservation,
    decode,
    decode_as,
    encode,
    encode_batches,
    encode_pending_batches,
    encode_sighting_batches,
    message_key,
)


def _of_type(samples: list[Record], record_type: type[Record]) -> Record:
    return next(r for r in samples if type(r) is record_type)


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_every_record_type_round_trips_through_json(
    samples: list[Record], record_type: type[Record]
) -> None:
    record = _of_type(samples, record_type)
    assert decode_as(record_type, encode(record), topic="t") == record


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_every_record_carries_its_schema_version(
    samples: list[Record], record_type: type[Record]
) -> None:
    assert msgspec.json.decode(encode(_of_type(samples, record_type)))["v"] == 1


def test_hostile_strings_survive_the_wire_unchanged(samples: list[Record]) -> None:
    edge = _of_type(samples, Edge)
    assert isinstance(edge, Edge)
    wire = encode(edge)
    assert b"\n" not in wire  # one JSON document per line stays possible
    decoded = decode(EDGES, wire)
    assert isinstance(decoded, Edge)
    assert decoded.server.dns_name == edge.server.dns_name


def test_unknown_fields_are_ignored_so_old_consumers_read_new_producers(
    samples: list[Record],
) -> None:
    pod = _of_type(samples, PodIdentity)
    document = msgspec.json.decode(encode(pod))
    document["added_in_a_later_release"] = {"anything": [1, 2]}
    assert decode(PODS, msgspec.json.encode(document)) == pod


def test_optional_fields_are_filled_with_their_defaults() -> None:
    minimal = (
        b'{"cluster":"c","uid":"u","namespace":"n","name":"p","workload":{"kind":"Pod","name":"p"}}'
    )
    pod = decode(PODS, minimal)
    assert isinstance(pod, PodIdentity)
    assert (pod.v, pod.ips, pod.labels, pod.deleted, pod.host_network) == (1, (), {}, None, False)


def test_a_missing_required_field_is_named_with_the_topic() -> None:
    with pytest.raises(WireDecodeError) as caught:
        decode(PODS, b'{"v":1,"cluster":"c","namespace":"n","name":"p"}')
    assert caught.value.topic == "callmap.pods.v1"
    assert caught.value.field == "uid"
    assert "callmap.pods.v1" in str(caught.value) and "uid" in str(caught.value)


def test_a_wrong_type_deep_in_a_batch_is_named_by_its_path(samples: list[Record]) -> None:
    batch = msgspec.json.decode(encode(_of_type(samples, DnsAnswerBatch)))
    batch["records"][1]["qname"] = 7
    with pytest.raises(WireDecodeError) as caught:
        decode(DNS, msgspec.json.encode(batch))
    assert caught.value.field == "records[1].qname"


def test_a_value_outside_an_enumeration_is_rejected(samples: list[Record]) -> None:
    batch = msgspec.json.decode(encode(_of_type(samples, DnsAnswerBatch)))
    batch["records"][0]["transport"] = "sctp"
    with pytest.raises(WireDecodeError) as caught:
        decode(DNS, msgspec.json.encode(batch))
    assert caught.value.field == "records[0].transport"


@pytest.mark.parametrize("version", [0, 2, "1"])
def test_another_schema_version_is_rejected_naming_the_version_field(
    samples: list[Record], version: object
) -> None:
    document = msgspec.json.decode(encode(_of_type(samples, Edge)))
    document["v"] = version
    with pytest.raises(WireDecodeError) as caught:
        decode(EDGES, msgspec.json.encode(document))
    assert caught.value.field == "v"


def test_a_foreign_version_is_reported_even_when_its_shape_differs() -> None:
    with pytest.raises(WireDecodeError) as caught:
        decode(EDGES, b'{"v":2,"edge":{"completely":"different"}}')
    assert caught.value.field == "v"


def test_a_foreign_version_inside_a_batch_is_rejected(samples: list[Record]) -> None:
    batch = msgspec.json.decode(encode(_of_type(samples, DnsAnswerBatch)))
    batch["records"][1]["v"] = 9
    with pytest.raises(WireDecodeError) as caught:
        decode(DNS, msgspec.json.encode(batch))
    assert caught.value.field == "records[1].v"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"{", b"\xff\xfe\x00", b"null", b"[]", b'"text"', b"42", b'{"v":1}', b"{}" * 3],
)
def test_garbage_raises_one_specific_error_on_every_topic(garbage: bytes) -> None:
    for spec in ALL_TOPICS:
        with pytest.raises(WireDecodeError) as caught:
            decode(spec, garbage)
        assert caught.value.topic == spec.name


def test_message_keys_follow_the_topics_definition(samples: list[Record]) -> None:
    keys = {type(record).__name__: message_key(record) for record in samples}
    assert keys == {
        "DnsAnswer": b"node-a",
        "SocketObservation": b"node-a",
        "DnsAnswerBatch": b"node-a",
        "SocketBatch": b"node-a",
        "PodIdentity": b"6d0c1f7e",
        "ServiceIdentity": b"test/shop/cartservice",  # names are qualified by cluster
        "NodeIdentity": b"test/node-a",
        "ClusterInfo": b"test",  # the alias
        "Edge": b"e3b0c44298fc1c14",
        "CaptureStats": b"node-a",
        "EdgeSighting": b"e3b0c44298fc1c14",
        "SightingBatch": None,
        "PendingBatch": b"node-a",
        "DeadLetter": None,
    }


def _answer(index: int) -> DnsAnswer:
    return DnsAnswer(
        cluster="c",
        node="n",
        ts=float(index),
        client_ip="10.0.0.1",
        server_ip="10.0.0.2",
        transport="udp",
        qname=f"host-{index}.example.org",
        qtype="A",
        answers=(f"192.0.2.{index % 250}",),
        ttl=60,
    )


def test_batches_stay_under_the_size_cap_and_keep_every_record_in_order() -> None:
    answers = [_answer(i) for i in range(1000)]
    messages = list(
        encode_batches(DnsAnswerBatch, cluster="c", node="n", records=answers, max_bytes=20_000)
    )
    assert len(messages) > 1
    assert all(len(message.value) <= 20_000 for message in messages)
    decoded = [decode(DNS, message.value) for message in messages]
    assert [len(b.records) for b in decoded] == [m.records for m in messages]  # type: ignore[attr-defined]
    assert all(isinstance(b, DnsAnswerBatch) and b.node == "n" for b in decoded)
    assert [r for b in decoded for r in b.records] == answers  # type: ignore[attr-defined]


def test_one_batch_is_byte_identical_to_encoding_the_batch_record() -> None:
    answers = tuple(_answer(i) for i in range(5))
    (message,) = encode_batches(DnsAnswerBatch, cluster="c", node="n", records=answers)
    assert message.records == 5
    assert message.value == encode(DnsAnswerBatch(cluster="c", node="n", records=answers))


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=400), max_size=300),
    max_bytes=st.integers(min_value=60, max_value=30_000),
)
def test_each_message_is_full_the_next_record_would_not_have_fitted(
    lengths: list[int], max_bytes: int
) -> None:
    answers = [
        msgspec.structs.replace(_answer(i), qname="a" * length + ".example.org")
        for i, length in enumerate(lengths)
    ]
    messages = list(
        encode_batches(
            DnsAnswerBatch, cluster="c", node="n", records=iter(answers), max_bytes=max_bytes
        )
    )
    decoded = [decode(DNS, message.value) for message in messages]
    assert [r for b in decoded for r in b.records] == answers  # type: ignore[attr-defined]
    assert [len(b.records) for b in decoded] == [m.records for m in messages]  # type: ignore[attr-defined]
    for message in messages:
        assert len(message.value) <= max_bytes or message.records == 1
    first = 0
    for message in messages[:-1]:
        first += message.records
        # One more record, the first of the next message, after a comma:
        assert len(message.value) + 1 + len(encode(answers[first])) > max_bytes


def test_a_record_larger_than_the_cap_still_goes_out_alone() -> None:
    messages = list(
        encode_batches(
            DnsAnswerBatch, cluster="c", node="n", records=[_answer(1), _answer(2)], max_bytes=50
        )
    )
    assert len(messages) == 2


def test_no_records_make_no_message() -> None:
    assert list(encode_batches(SocketBatch, cluster="c", node="n", records=[])) == []


def _sighting(index: int) -> EdgeSighting:
    long_name = ".".join(["a" * 60] * 3) + f".host-{index}.example.org"  # names run to 253
    return EdgeSighting(
        edge_id=f"edge-{index}",
        cluster="c",
        client=Endpoint(type="workload", namespace="shop", name=f"client-{index}"),
        server=Endpoint(type="external", dns_name=long_name),
        first_seen=1.0,
        last_seen=2.0,
    )


def test_sightings_are_split_by_bytes_not_by_count() -> None:
    sightings = [_sighting(i) for i in range(1000)]  # about 400 kB as one message
    messages = list(encode_sighting_batches(sightings, max_bytes=100_000))
    assert len(messages) > 1
    assert all(len(message.value) <= 100_000 for message in messages)
    decoded = [decode_as(SightingBatch, message.value, topic="sightings") for message in messages]
    assert [s for batch in decoded for s in batch.sightings] == sightings


def test_a_pending_batch_is_split_into_answers_then_sockets_with_its_due_time() -> None:
    answers = tuple(_answer(i) for i in range(300))
    sockets = tuple(
        SocketObservation(
            cluster="c", node="n", ts=1.0, netns=1, local_ip="10.0.0.1", local_port=40000 + i,
            remote_ip="10.0.0.2", remote_port=80, role="client", first_seen=1.0,
        )
        for i in range(300)
    )  # fmt: skip
    pending = PendingBatch(cluster="c", node="n", due=9.5, dns=answers, sockets=sockets)
    messages = list(encode_pending_batches(pending, max_bytes=10_000))
    assert all(len(message.value) <= 10_000 for message in messages)
    decoded = [decode_as(PendingBatch, message.value, topic="pending") for message in messages]
    assert all((b.cluster, b.node, b.due) == ("c", "n", 9.5) for b in decoded)
    assert all(not (b.dns and b.sockets) for b in decoded)
    assert tuple(a for b in decoded for a in b.dns) == answers
    assert tuple(s for b in decoded for s in b.sockets) == sockets
    (whole,) = encode_pending_batches(msgspec.structs.replace(pending, sockets=()))
    assert whole.value == encode(msgspec.structs.replace(pending, sockets=()))
