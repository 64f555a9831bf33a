"""Frames in, one node's DNS answers of a flush window out."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from callmap.counters import Counters
from capture.dnsfold import (
    DROP_DUPLICATE,
    DROP_FOLDED,
    DROP_NOT_FROM_PORT_53,
    DROP_REWRITTEN,
    DROP_TCP_NO_PAYLOAD,
    DROP_TO_DNS_SERVER,
    FOLD,
    FRAMES,
    PARSE,
    DnsFolder,
    RecentKeys,
)

CLIENT, DNS_SERVICE, DNS_POD = "10.1.0.10", "10.96.0.10", "10.1.0.53"


def dns_answer(
    qname: str = "cart.shop.svc.cluster.local",
    *,
    msg_id: int = 7,
    ips: tuple[str, ...] = ("10.96.4.2",),
    ttl: int = 30,
    rcode: int = 0,
    cname: str | None = None,
) -> DNS:
    records = []
    name = qname
    if cname:
        records.append(DNSRR(rrname=qname, type="CNAME", rdata=cname, ttl=ttl + 10))
        name = cname
    records += [DNSRR(rrname=name, type="A", rdata=ip, ttl=ttl) for ip in ips]
    return DNS(id=msg_id, qr=1, rd=1, ra=1, rcode=rcode, qd=[DNSQR(qname=qname)], an=records)


def udp_frame(
    message: DNS,
    *,
    server: str = DNS_SERVICE,
    client: str = CLIENT,
    sport: int = 53,
    dport: int = 40000,
) -> bytes:
    return bytes(Ether() / IP(src=server, dst=client) / UDP(sport=sport, dport=dport) / message)


def tcp_frame(*messages: DNS, server: str = DNS_SERVICE, client: str = CLIENT) -> bytes:
    payload = b"".join(struct.pack("!H", len(bytes(m))) + bytes(m) for m in messages)
    segment = TCP(sport=53, dport=40001, flags="PA") / payload
    return bytes(Ether() / IP(src=server, dst=client) / segment)


def folder() -> tuple[DnsFolder, Counters]:
    counters = Counters()
    return DnsFolder(cluster="c", node="node-a", counters=counters), counters


def balanced(counters: Counters) -> bool:
    """Every stage accounts for everything it saw."""
    return all(s.seen == s.emitted + sum(s.dropped.values()) for s in counters.totals().values())


def test_a_response_becomes_one_record_with_every_field() -> None:
    f, counters = folder()
    f.add_frame(udp_frame(dns_answer()), ts=100.0)
    (record,) = f.flush(now=101.0)
    assert record.cluster == "c" and record.node == "node-a"
    assert (record.client_ip, record.server_ip, record.transport) == (CLIENT, DNS_SERVICE, "udp")
    assert (record.qname, record.qtype, record.answers) == (
        "cart.shop.svc.cluster.local",
        "A",
        ("10.96.4.2",),
    )
    assert (record.ts, record.ttl, record.count) == (100.0, 30, 1)
    assert balanced(counters)


def test_a_cname_chain_keeps_the_name_asked_and_the_final_addresses() -> None:
    f, _ = folder()
    f.add_frame(
        udp_frame(
            dns_answer(
                "api.stripe.com", cname="edge.stripe.net", ips=("203.0.113.10", "203.0.113.11")
            )
        ),
        ts=1.0,
    )
    (record,) = f.flush(now=2.0)
    assert record.qname == "api.stripe.com"
    assert record.cnames == ("edge.stripe.net",)
    assert record.answers == ("203.0.113.10", "203.0.113.11")
    assert record.ttl == 30


def test_the_same_response_on_two_interfaces_is_one_record_even_across_dnat() -> None:
    f, counters = folder()
    f.add_frame(udp_frame(dns_answer(), server=DNS_POD), ts=1.0)  # the DNS pod's veth
    f.add_frame(udp_frame(dns_answer(), server=DNS_SERVICE), ts=1.0001)  # the client's veth
    (record,) = f.flush(now=2.0)
    assert record.count == 1 and record.server_ip == DNS_POD
    assert counters.stage(FOLD).dropped[DROP_DUPLICATE] == 1
    assert balanced(counters)


def test_identical_answers_to_different_queries_fold_with_a_count() -> None:
    f, counters = folder()
    f.add_frame(udp_frame(dns_answer(msg_id=1, ttl=30)), ts=5.0)
    f.add_frame(udp_frame(dns_answer(msg_id=2, ttl=12), dport=40002), ts=5.5)
    f.add_frame(udp_frame(dns_answer(msg_id=3, ttl=20), dport=40003), ts=4.5)
    (record,) = f.flush(now=6.0)
    assert (record.count, record.ts, record.ttl) == (3, 4.5, 12)
    assert counters.stage(FOLD).dropped[DROP_FOLDED] == 2


def test_a_window_is_full_at_its_most_distinct_answers_not_at_its_most_responses() -> None:
    f = DnsFolder(cluster="c", node="node-a", counters=Counters(), max_window=2)
    f.add_frame(udp_frame(dns_answer(msg_id=1)), ts=1.0)
    f.add_frame(udp_frame(dns_answer(msg_id=2), dport=40002), ts=1.1)  # folds: still one
    assert not f.full
    f.add_frame(udp_frame(dns_answer(msg_id=3, ips=("10.96.4.3",)), dport=40003), ts=1.2)
    assert f.full
    assert [r.count for r in f.flush(now=1.3)] == [2, 1]
    assert not f.full  # the next window starts empty


def test_different_answers_stay_apart_and_each_window_starts_empty() -> None:
    f, _ = folder()
    f.add_frame(udp_frame(dns_answer(ips=("10.96.4.2",))), ts=1.0)
    f.add_frame(udp_frame(dns_answer(msg_id=8, ips=("10.96.4.3",)), dport=40009), ts=1.1)
    assert len(f.flush(now=2.0)) == 2
    assert f.flush(now=3.0) == []


def test_a_retransmission_after_the_dedup_window_counts_again() -> None:
    f, _ = folder()
    f.add_frame(udp_frame(dns_answer()), ts=1.0)
    assert len(f.flush(now=1.5)) == 1
    f.add_frame(udp_frame(dns_answer()), ts=10.0)  # same id and port, much later
    (record,) = f.flush(now=11.0)
    assert record.count == 1


def test_copies_a_few_milliseconds_apart_are_one_sighting_in_a_long_window() -> None:
    f, counters = folder()
    f.add_frame(udp_frame(dns_answer()), ts=1.0)
    f.add_frame(udp_frame(dns_answer()), ts=1.004)  # the copy on the next interface
    (record,) = f.flush(now=11.0)
    assert record.count == 1
    assert counters.stage(FOLD).dropped[DROP_DUPLICATE] == 1


def test_the_dedup_memory_follows_capture_time_not_the_flush_window() -> None:
    # One flush window of ten seconds: the same message id and port answered again
    # a second and a half later is a new response, folded with the first, not a copy.
    f, counters = folder()
    f.add_frame(udp_frame(dns_answer()), ts=1.0)
    f.add_frame(udp_frame(dns_answer()), ts=2.5)
    (record,) = f.flush(now=11.0)
    assert record.count == 2
    assert counters.stage(FOLD).dropped.get(DROP_DUPLICATE, 0) == 0
    assert balanced(counters)


def test_error_responses_and_queries_are_counted_not_emitted() -> None:
    f, counters = folder()
    nxdomain = dns_answer("cart.shop.svc.cluster.local.shop.svc.cluster.local", rcode=3, ips=())
    f.add_frame(udp_frame(nxdomain), ts=1.0)
    f.add_frame(udp_frame(dns_answer(rcode=2, ips=())), ts=1.0)
    f.add_frame(udp_frame(dns_answer(), sport=40000, dport=53), ts=1.0)  # client to server
    f.add_frame(b"\x00" * 10, ts=1.0)
    assert f.flush(now=2.0) == []
    assert counters.stage(PARSE).dropped["nxdomain"] == 1
    assert counters.stage(PARSE).dropped["servfail"] == 1
    assert counters.stage(FRAMES).dropped[DROP_NOT_FROM_PORT_53] == 1
    assert sum(counters.stage(FRAMES).dropped.values()) == 2
    assert balanced(counters)


def test_tcp_segments_carry_several_length_prefixed_responses() -> None:
    f, counters = folder()
    f.add_frame(
        tcp_frame(dns_answer("a.example.org", msg_id=1), dns_answer("b.example.org", msg_id=2)),
        ts=1.0,
    )
    handshake = bytes(Ether() / IP(src=DNS_SERVICE, dst=CLIENT) / TCP(sport=53, flags="SA"))
    f.add_frame(handshake, ts=1.0)
    records = f.flush(now=2.0)
    assert sorted(r.qname for r in records) == ["a.example.org", "b.example.org"]
    assert all(r.transport == "tcp" for r in records)
    assert counters.stage(FRAMES).dropped[DROP_TCP_NO_PAYLOAD] == 1


def test_ipv6_transport_and_aaaa_answers() -> None:
    f, _ = folder()
    message = DNS(
        id=9,
        qr=1,
        qd=[DNSQR(qname="db.data.svc.cluster.local", qtype="AAAA")],
        an=[DNSRR(rrname="db.data.svc.cluster.local", type="AAAA", rdata="fd00::5")],
    )
    frame = Ether() / IPv6(src="fd00::53", dst="fd00::10") / UDP(sport=53, dport=5000) / message
    f.add_frame(bytes(frame), ts=1.0)
    (record,) = f.flush(now=2.0)
    assert (record.client_ip, record.qtype, record.answers) == ("fd00::10", "AAAA", ("fd00::5",))


def test_frames_the_kernel_dropped_are_counted_as_seen_and_lost() -> None:
    f, counters = folder()
    f.count_frames_lost("kernel_drop", 5)
    assert counters.stage(FRAMES).dropped["kernel_drop"] == 5
    assert balanced(counters)


UPSTREAM, NODE = "10.77.0.254", "10.77.0.11"


def test_an_answer_whose_destination_the_node_rewrote_is_one_answer_to_the_last_one() -> None:
    # A pod's masqueraded query: its answer is seen on the uplink addressed to the
    # node, then on the pod's veth addressed to the pod, same ports and message id.
    f, counters = folder()
    answer = dns_answer("api.stripe.com", ips=("203.0.113.10",))
    f.add_frame(udp_frame(answer, server=UPSTREAM, client=NODE), ts=1.0)
    f.add_frame(udp_frame(answer, server=UPSTREAM, client=CLIENT), ts=1.0002)
    (record,) = f.flush(now=2.0)
    assert (record.client_ip, record.count) == (CLIENT, 1)
    assert counters.stage(FOLD).dropped[DROP_REWRITTEN] == 1
    assert balanced(counters)


def test_a_rewritten_answer_leaves_the_others_folded_under_the_first_destination() -> None:
    f, counters = folder()
    answer = dns_answer("api.stripe.com", ips=("203.0.113.10",))
    f.add_frame(
        udp_frame(answer, server=UPSTREAM, client=NODE, dport=1111), ts=1.0
    )  # a host process
    f.add_frame(udp_frame(dns_answer("api.stripe.com", msg_id=9, ips=("203.0.113.10",)),
                          server=UPSTREAM, client=NODE, dport=2222), ts=1.1)  # fmt: skip
    f.add_frame(udp_frame(answer, server=UPSTREAM, client=CLIENT, dport=1111), ts=1.1001)
    records = {r.client_ip: r.count for r in f.flush(now=2.0)}
    assert records == {NODE: 1, CLIENT: 1}
    assert balanced(counters)


def test_a_dns_servers_own_upstream_lookups_are_not_a_clients_answers() -> None:
    f, counters = folder()
    upstream = dns_answer("api.stripe.com", ips=("203.0.113.10",))
    f.add_frame(udp_frame(upstream, server=UPSTREAM, client=DNS_POD), ts=1.0)  # CoreDNS forwards
    to_pod = udp_frame(dns_answer("api.stripe.com", ips=("203.0.113.10",)), server=DNS_POD)
    f.add_frame(to_pod, ts=1.001)  # and answers the pod
    (record,) = f.flush(now=2.0)
    assert (record.client_ip, record.server_ip) == (CLIENT, DNS_POD)
    assert counters.stage(FOLD).dropped[DROP_TO_DNS_SERVER] == 1
    # Remembered: the server's later lookups are dropped though it answers no one then.
    f.add_frame(udp_frame(upstream, server=UPSTREAM, client=DNS_POD), ts=30.0)
    assert f.flush(now=31.0) == []
    assert balanced(counters)


def test_a_dns_server_is_forgotten_after_it_stops_answering() -> None:
    counters = Counters()
    f = DnsFolder(cluster="c", node="n", counters=counters, server_memory=60.0)
    f.add_frame(udp_frame(dns_answer(), server=DNS_POD, client=CLIENT), ts=1.0)
    f.flush(now=2.0)
    f.flush(now=100.0)
    f.add_frame(udp_frame(dns_answer(), server=UPSTREAM, client=DNS_POD), ts=100.5)
    (record,) = f.flush(now=101.0)
    assert record.client_ip == DNS_POD


NODE_LOCAL_CACHE = "169.254.20.10"


def test_a_node_local_caches_lookups_from_the_nodes_address_are_not_the_nodes_answers() -> None:
    f, counters = folder()
    f.local_addresses = frozenset({NODE, NODE_LOCAL_CACHE})  # the node's own namespace
    upstream = dns_answer("api.stripe.com", ips=("203.0.113.10",))
    f.add_frame(udp_frame(upstream, server=DNS_SERVICE, client=NODE), ts=1.0)  # the cache asks
    f.add_frame(udp_frame(upstream, server=NODE_LOCAL_CACHE, client=CLIENT), ts=1.001)
    (record,) = f.flush(now=2.0)
    assert (record.client_ip, record.server_ip) == (CLIENT, NODE_LOCAL_CACHE)
    assert counters.stage(FOLD).dropped[DROP_TO_DNS_SERVER] == 1
    assert balanced(counters)


def test_the_nodes_own_lookups_count_while_nothing_in_its_namespace_serves_dns() -> None:
    f, _ = folder()
    f.local_addresses = frozenset({NODE, NODE_LOCAL_CACHE})
    f.add_frame(udp_frame(dns_answer(), server=DNS_POD, client=CLIENT), ts=1.0)  # a DNS pod serves
    f.add_frame(udp_frame(dns_answer(msg_id=8), server=DNS_SERVICE, client=NODE), ts=1.1)
    assert {r.client_ip for r in f.flush(now=2.0)} == {CLIENT, NODE}


def test_a_tcp_answer_over_several_segments_is_one_record_with_every_address() -> None:
    f, counters = folder()
    many = tuple(f"10.96.{i // 250}.{i % 250 + 1}" for i in range(300))  # 13 kB, names uncompressed
    message = bytes(dns_answer("big.shop.svc.cluster.local", ips=many))
    stream = struct.pack("!H", len(message)) + message
    parts = [(stream[i : i + 1400], 5000 + i) for i in range(0, len(stream), 1400)]
    frames = [
        bytes(Ether() / IP(src=DNS_SERVICE, dst=CLIENT) / TCP(sport=53, dport=40001, seq=seq,
              flags="PA") / chunk)
        for chunk, seq in parts
    ]  # fmt: skip
    assert len(frames) > 2
    for frame in [frames[0], frames[0], *frames[1:]]:  # the first seen on two interfaces
        f.add_frame(frame, ts=1.0)
    (record,) = f.flush(now=2.0)
    assert record.answers == many and record.transport == "tcp"
    assert counters.stage("dns.tcp").dropped["duplicate"] == 1
    assert counters.stage(PARSE).dropped.get("tcp_partial", 0) == 0
    assert balanced(counters)


# --- remembering sightings -------------------------------------------------------


@pytest.mark.parametrize("set_at", [100.0, 100.3, 101.95, 102.0, 102.05, 103.7])
def test_a_sighting_is_remembered_for_its_span_and_forgotten_within_twice_it(
    set_at: float,
) -> None:
    span, step = 2.0, 0.1  # flushes every 0.1 s
    recent: RecentKeys[str, float] = RecentKeys(span)
    now = 100.0
    while now < set_at:
        recent.turn(now)
        now = round(now + step, 6)
    recent.put("k", set_at)
    while now <= set_at + span:
        recent.turn(now)
        assert recent.get("k") == set_at, now
        now = round(now + step, 6)
    while now <= set_at + 2 * span + 2 * step:
        recent.turn(now)
        now = round(now + step, 6)
    assert recent.get("k") is None and len(recent) == 0


def test_a_long_silence_forgets_both_generations() -> None:
    recent: RecentKeys[str, float] = RecentKeys(span=1.0)
    recent.turn(0.0)
    recent.put("k", 0.0)
    recent.turn(0.5)
    assert recent.get("k") == 0.0
    recent.turn(5.0)  # the newer generation is over twice the span old
    assert recent.get("k") is None and len(recent) == 0


def test_the_newer_value_of_a_key_set_again_wins_and_put_gives_the_one_before() -> None:
    recent: RecentKeys[str, float] = RecentKeys(span=1.0)
    recent.turn(0.0)
    assert recent.put("k", 0.5) is None
    recent.turn(1.0)
    assert recent.put("k", 1.5) == 0.5  # from the older generation
    assert recent.get("k") == 1.5


def test_a_windows_records_come_oldest_first_and_ties_in_the_order_they_came() -> None:
    f, _ = folder()
    seen = [(3.0, "c"), (1.0, "a"), (2.0, "b1"), (2.0, "b2"), (2.0, "b3")]
    for n, (ts, name) in enumerate(seen):
        f.add_frame(udp_frame(dns_answer(f"{name}.shop.svc.cluster.local", msg_id=n)), ts=ts)
    records = f.flush(now=4.0)
    assert [r.qname.split(".")[0] for r in records] == ["a", "b1", "b2", "b3", "c"]


def test_a_closed_windows_records_are_made_later_apart_from_the_next_windows() -> None:
    """The capture thread folds on while the flush makes the closed window's records."""
    f, counters = folder()
    f.add_frame(udp_frame(dns_answer("old.shop.svc.cluster.local", msg_id=1)), ts=1.0)
    closed = f.close_window(now=2.0)
    f.add_frame(udp_frame(dns_answer("old.shop.svc.cluster.local", msg_id=2)), ts=2.5)
    f.add_frame(udp_frame(dns_answer("new.shop.svc.cluster.local", msg_id=3)), ts=2.6)
    assert [(r.qname, r.count) for r in closed.records()] == [("old.shop.svc.cluster.local", 1)]
    assert closed.records() == []  # made once
    assert sorted((r.qname, r.count) for r in f.flush(now=3.0)) == [
        ("new.shop.svc.cluster.local", 1),
        ("old.shop.svc.cluster.local", 1),
    ]
    assert balanced(counters)


def test_a_folder_told_to_parse_in_python_makes_the_same_records() -> None:
    frames = [
        udp_frame(dns_answer()),
        udp_frame(dns_answer(msg_id=8)),  # the same answer again: folded
        udp_frame(dns_answer("Api.Shop.svc.cluster.local", msg_id=9, ips=("10.96.0.7",) * 2)),
        udp_frame(dns_answer("stripe.com", msg_id=10, cname="edge.cdn.net")),
        udp_frame(dns_answer("gone.shop", msg_id=11, rcode=3)),
        tcp_frame(
            dns_answer("big.shop.svc.cluster.local", msg_id=12, ips=("10.0.0.1", "10.0.0.2"))
        ),
    ]
    made = []
    for native in (True, False):
        counters = Counters()
        f = DnsFolder(cluster="c", node="node-a", counters=counters, native=native)
        for n, frame in enumerate(frames):
            f.add_frame(frame, ts=1.0 + n / 100)
        made.append((f.flush(now=2.0), counters.totals()))
    assert made[0] == made[1]
    assert len(made[0][0]) == 4  # the plain ones read in C where it was built, the rest in Python
