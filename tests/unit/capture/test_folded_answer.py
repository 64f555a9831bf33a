"""A window's answers go to Kafka as they are: each encodes as the wire's DnsAnswer."""

from __future__ import annotations

import msgspec
from helpers.ringblocks import block
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dns import DNS as DnsMessage
from scapy.layers.dns import DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from callmap.counters import Counters
from callmap.wire import DNS, SCHEMA_VERSION, DnsAnswer, DnsAnswerBatch, decode, encode_batches
from capture.dnsfold import DnsFolder, FoldedAnswer

texts = st.text(max_size=40)
names = st.tuples(texts) | st.lists(texts, max_size=4).map(tuple)


@given(
    cluster=texts,
    node=texts,
    ts=st.floats(allow_nan=False, allow_infinity=False),
    addresses=st.tuples(texts, texts),
    transport=st.sampled_from(["udp", "tcp"]),
    qname=texts,
    qtype=st.sampled_from(["A", "AAAA"]),
    answers=names,
    cnames=names,
    ttl=st.integers(0, 2**32 - 1),
    count=st.integers(1, 2**40),
)
def test_an_answer_encodes_byte_for_byte_as_the_wire_record(
    cluster: str,
    node: str,
    ts: float,
    addresses: tuple[str, str],
    transport: str,
    qname: str,
    qtype: str,
    answers: tuple[str, ...],
    cnames: tuple[str, ...],
    ttl: int,
    count: int,
) -> None:
    client, server = addresses
    folded = FoldedAnswer(
        SCHEMA_VERSION, cluster, node, ts, client, server, transport, qname, qtype,  # type: ignore[arg-type]
        answers, cnames, ttl, count,
    )  # fmt: skip
    record = DnsAnswer(
        cluster=cluster, node=node, ts=ts, client_ip=client, server_ip=server,
        transport=transport, qname=qname, qtype=qtype, answers=answers,  # type: ignore[arg-type]
        cnames=cnames, ttl=ttl, count=count,
    )  # fmt: skip
    assert msgspec.json.encode(folded) == msgspec.json.encode(record)
    assert folded.answer() == record


def test_a_published_window_decodes_to_what_was_captured() -> None:
    """A ring block folded in C and in Python, the window encoded as the agent encodes
    it, read back with the topic's own decoder."""
    sent = [
        ("10.1.0.7", 41000, 1, "cart.shop.svc.cluster.local", ("10.96.4.2",), 30, 100.25),
        ("10.1.0.7", 41001, 2, "cart.shop.svc.cluster.local", ("10.96.4.2",), 12, 100.5),
        ("10.1.0.9", 41002, 3, "api.example.com", ("192.0.2.1", "192.0.2.2"), 300, 100.75),
    ]
    for native in (True, False):
        folder = DnsFolder(cluster="prod", node="node-a", counters=Counters(), native=native)
        frames = []
        for client, port, msg_id, qname, ips, ttl, ts in sent:
            message = DnsMessage(
                id=msg_id, qr=1, qd=[DNSQR(qname=qname)],
                an=[DNSRR(rrname=qname, type="A", rdata=ip, ttl=ttl) for ip in ips],
            )  # fmt: skip
            datagram = IP(src="10.96.0.10", dst=client) / UDP(sport=53, dport=port) / message
            frames.append((bytes(Ether() / datagram), int(ts), int(ts % 1 * 1e9)))
        assert folder.take_block(memoryview(block(frames)), 0, 4096) == (len(sent), True)
        answers = folder.close_window(101.0).answers()
        messages = list(
            encode_batches(DnsAnswerBatch, cluster="prod", node="node-a", records=answers)
        )
        assert len(messages) == 1
        batch = decode(DNS, messages[0].value)
        assert isinstance(batch, DnsAnswerBatch)
        assert list(batch.records) == [
            DnsAnswer(cluster="prod", node="node-a", ts=100.25, client_ip="10.1.0.7",
                      server_ip="10.96.0.10", transport="udp",
                      qname="cart.shop.svc.cluster.local", qtype="A", answers=("10.96.4.2",),
                      ttl=12, count=2),
            DnsAnswer(cluster="prod", node="node-a", ts=100.75, client_ip="10.1.0.9",
                      server_ip="10.96.0.10", transport="udp",
                      qname="api.example.com", qtype="A", answers=("192.0.2.1", "192.0.2.2"),
                      ttl=300),
        ]  # fmt: skip
