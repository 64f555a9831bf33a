"""A receive ring block folded in C (``capture/_dnsfast_fold.c``'s ``fold_block``) is
folded as :class:`capture.dnsfold.DnsFolder` folds it in Python.

The C fold keeps the folder's own dicts, with the keys Python's ``hash`` of the
same tuples gives, so a response may be read in C on one interface and in
Python on another (a tagged frame, IPv4 with options, a CNAME chain): the
copies are still one sighting, and a rewritten destination still takes back
what it was counted under. The reference is the folder without C, block by
block: the same window, the same counters, the same records.
"""

from __future__ import annotations

import struct
from itertools import pairwise
from typing import Any

import msgspec
import pytest
from helpers.dnsmessages import answer
from helpers.ringblocks import block
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, IPOption_EOL, IPOption_NOP
from scapy.layers.l2 import Dot1Q, Ether

from callmap.counters import Counters
from capture.dnsfold import _FOLD_BLOCK, DROP_DUPLICATE, DROP_FOLDED, DROP_REWRITTEN, DnsFolder
from capture.frames import read_plain_dns

NOT_BUILT = "capture/_dnsfast.c was not built: `pip install -e .` needs gcc"
pytestmark = pytest.mark.skipif(read_plain_dns is None, reason=NOT_BUILT)

SIZE = 1 << 16
T0 = 1_796_000_000
NAMES = ("web.shop.svc.cluster.local", "api.example.com", "db")
ADDRESSES = ("10.96.0.12", "192.0.2.1", "192.0.2.2")
SERVERS = ("10.96.0.10", "10.244.1.5")
CLIENTS = ("10.1.0.7", "10.1.0.8", "10.244.1.5")  # the last one also serves DNS
Frame = tuple[bytes, int, int]


def response(qname: str, addresses: tuple[str, ...], ttl: int, msg_id: int) -> bytes:
    records = [(qname + ".", ttl, "A", address) for address in addresses]
    wire = bytearray(answer(qname, "A", *records))
    struct.pack_into("!H", wire, 0, msg_id)
    return bytes(wire)


def chained(qname: str, address: str, msg_id: int) -> bytes:
    """A response through a CNAME: never the usual one, so read in Python."""
    cname = (qname + ".", 60, "CNAME", "edge.example.net.")
    wire = bytearray(answer(qname, "A", cname, ("edge.example.net.", 20, "A", address)))
    struct.pack_into("!H", wire, 0, msg_id)
    return bytes(wire)


def frame(message: bytes, server: str, client: str, port: int, how: str = "usual") -> bytes:
    """``message`` from ``server`` port 53 to ``client``: the usual frame, or the same
    datagram in a frame only Python reads (802.1Q-tagged, or IPv4 with options)."""
    datagram = UDP(sport=53, dport=port) / message
    if how == "tagged":
        return bytes(Ether() / Dot1Q(vlan=7) / IP(src=server, dst=client) / datagram)
    options = [IPOption_NOP()] * 3 + [IPOption_EOL()] if how == "options" else []
    return bytes(Ether() / IP(src=server, dst=client, options=options) / datagram)


def folders() -> tuple[DnsFolder, DnsFolder]:
    """A folder that folds in C, and one that folds in Python."""
    return tuple(  # type: ignore[return-value]
        DnsFolder(cluster="c", node="n", counters=Counters(), native=native)
        for native in (True, False)
    )


def window(folder: DnsFolder) -> dict[int, tuple[Any, ...]]:
    """The folder's window, by key, each entry's fields."""
    return {key: msgspec.structs.astuple(entry) for key, entry in folder._window.items()}


def fold_counts(folder: DnsFolder) -> dict[str, int]:
    stage = folder._fold
    return {"seen": stage.seen, **{k: v for k, v in stage.dropped.items() if v}}


def take(folder: DnsFolder, frames: list[Frame]) -> None:
    data = block(frames, size=SIZE)
    assert folder.take_block(memoryview(data), 0, SIZE) == (len(frames), True)


def take_alike(frames_by_block: list[list[Frame]]) -> DnsFolder:
    """The blocks taken by both folders, held alike after each; the C one."""
    in_c, in_python = folders()
    for frames in frames_by_block:
        take(in_c, frames)
        take(in_python, frames)
        assert window(in_c) == window(in_python)
        assert fold_counts(in_c) == fold_counts(in_python)
    return in_c


def test_copies_of_one_response_read_in_c_and_in_python_are_one_sighting() -> None:
    message = response(NAMES[0], ADDRESSES[:1], 30, 7)
    copies = [
        (frame(message, SERVERS[0], CLIENTS[0], 4000, how), T0, 1000 * i)
        for i, how in enumerate(("usual", "tagged", "options", "usual"))
    ]
    in_c = take_alike([copies])
    assert fold_counts(in_c) == {"seen": 4, DROP_DUPLICATE: 3}
    assert len(in_c._window) == 1


def test_a_rewritten_destination_takes_back_its_count_whichever_side_read_it() -> None:
    message = response(NAMES[1], ADDRESSES[1:], 60, 9)
    for first, then in (("usual", "options"), ("tagged", "usual")):
        # A server's upstream answer reaches the node, then goes on to the pod.
        in_c = take_alike([[
            (frame(message, SERVERS[1], "192.168.0.2", 5353, first), T0, 0),
            (frame(message, SERVERS[1], CLIENTS[0], 5353, then), T0, 5000),
        ]])  # fmt: skip
        assert fold_counts(in_c) == {"seen": 2, DROP_REWRITTEN: 1}
        assert [entry.client_ip for entry in in_c._window.values()] == [CLIENTS[0]]


def test_identical_answers_fold_into_one_entry_with_the_smallest_ttl_and_first_time() -> None:
    frames = [
        (frame(response(NAMES[2], ADDRESSES[:2], ttl, msg_id), SERVERS[0], CLIENTS[1], 4001),
         T0 + seconds, 0)
        for msg_id, ttl, seconds in ((1, 30, 9), (2, 10, 5), (3, 20, 7))
    ]  # fmt: skip
    in_c = take_alike([frames])
    [entry] = in_c._window.values()
    # the earliest capture, not the first; the smallest TTL; every response
    assert (entry.ts, entry.ttl, entry.count) == (T0 + 5, 10, 3)
    assert fold_counts(in_c) == {"seen": 3, DROP_FOLDED: 2}


event = st.tuples(
    st.sampled_from(("usual", "usual", "usual", "tagged", "options", "chained")),
    st.integers(0, len(NAMES) - 1),
    st.sets(st.integers(0, len(ADDRESSES) - 1), min_size=1),
    st.sampled_from((0, 30, 300, 0x80000001)),  # a TTL with the top bit set reads as 0
    st.integers(1, 3),  # message id
    st.integers(0, len(SERVERS) - 1),
    st.integers(0, len(CLIENTS) - 1),
    st.sampled_from((4000, 4001)),
    st.sampled_from((0, 1_000, 3_000_000, 70_000_000, 400_000_000)),  # ns after the last
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, max_size=60), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_any_traffic_folds_alike_block_by_block_and_flushes_the_same_records(
    events: list[tuple[Any, ...]], cuts: list[int]
) -> None:
    frames: list[Frame] = []
    ns = 0
    for how, name, addresses, ttl, msg_id, server, client, port, step in events:
        picked = tuple(ADDRESSES[i] for i in sorted(addresses))
        if how == "chained":
            message, how = chained(NAMES[name], picked[0], msg_id), "usual"
        else:
            message = response(NAMES[name], picked, ttl, msg_id)
        ns += step
        sent = frame(message, SERVERS[server], CLIENTS[client], port, how)
        frames.append((sent, T0 + ns // 10**9, ns % 10**9))
    ends = sorted({0, len(frames), *(min(cut, len(frames)) for cut in cuts)})
    blocks = [frames[a:b] for a, b in pairwise(ends) if b > a]
    in_c, in_python = folders()
    for frames_of_block in blocks:
        take(in_c, frames_of_block)
        take(in_python, frames_of_block)
        assert window(in_c) == window(in_python)
    now = T0 + ns / 1e9 + 1
    assert in_c.flush(now) == in_python.flush(now)
    assert in_c._fold.seen == in_python._fold.seen == len(frames)
    assert +in_c._fold.dropped == +in_python._fold.dropped


def test_an_error_in_python_stops_the_block_with_it() -> None:
    in_c, _ = folders()
    message = response(NAMES[0], ADDRESSES[:1], 30, 7)
    frames = [(frame(message, SERVERS[0], CLIENTS[0], 4000, "tagged"), T0, 0)]

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the folder")

    in_c._add_unusual = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug in the folder"):
        take(in_c, frames)


def test_the_counters_of_a_block_folded_in_c_add_up() -> None:
    again = frame(response(NAMES[0], ADDRESSES, 30, 1), SERVERS[0], CLIENTS[0], 4000)
    other_id = frame(response(NAMES[0], ADDRESSES, 30, 2), SERVERS[0], CLIENTS[0], 4000)
    in_c = take_alike([[(again, T0, i) for i in range(5)] + [(other_id, T0, 9)]])
    assert len(in_c.flush(T0 + 1.0)) == 1
    stage = in_c._fold
    assert stage.seen == stage.emitted + sum(stage.dropped.values()) == 6
    assert (stage.emitted, stage.dropped[DROP_DUPLICATE], stage.dropped[DROP_FOLDED]) == (1, 4, 1)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.characters(max_codepoint=127), max_size=80),
    items=st.lists(
        st.text(max_size=20) | st.integers(0, 2**64) | st.tuples(st.text(max_size=9)), max_size=9
    ),
)
def test_the_c_fold_hashes_strings_and_tuples_as_python_does(text: str, items: list[Any]) -> None:
    from capture import _dnsfast

    assert _dnsfast.python_hashes(text, tuple(items)) == (hash(text), hash(tuple(items)))
    assert _FOLD_BLOCK is not None  # this Python's own check at import passed


def test_a_python_that_hashed_otherwise_would_fold_in_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from capture import _dnsfast, dnsfold

    monkeypatch.setattr(_dnsfast, "python_hashes", lambda text, items: (hash(text), 0))
    assert dnsfold._folding_in_c() is None
    assert "folded in Python" in caplog.text
    monkeypatch.undo()
    assert dnsfold._folding_in_c() is _dnsfast.fold_block
