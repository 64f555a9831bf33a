"""sock_diag answers in: every TCP socket read with its tcp_info, bad input counted, never raised.

Messages are built from the kernel's layouts by :mod:`helpers.diagmsgs`, then
cut, mangled and mixed with random bytes. Every test that reads messages runs
twice: with the Python loop and with the loop in C (``capture/_inetdiag.c``),
which an editable install builds; and the two are held to the same answers on
random dumps, cut and mangled.
"""

from __future__ import annotations

import itertools
import socket
import struct

import pytest
from helpers.diagmsgs import (
    INET_DIAG_INFO,
    LISTEN,
    NLMSG_NOOP,
    SOCK_DIAG_BY_FAMILY,
    TCP_INFO_3_14,
    TCP_INFO_4_1,
    TCP_INFO_4_2,
    TCP_INFO_6_1,
    TCP_INFO_6_18,
    TCPDIAG_GETSOCK,
    TIME_WAIT,
    attribute,
    diag_msg,
    done,
    error,
    nlmsg,
    socket_message,
    tcp_info,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capture.inetdiag import (
    ALL_TCP_STATES,
    DROP_BAD_ATTRIBUTE,
    DROP_BAD_LENGTH,
    DROP_BAD_STATE,
    DROP_ODD_FAMILY,
    DROP_OTHER_MESSAGE,
    DROP_REASONS,
    DROP_SHORT_MESSAGE,
    DROP_SHORT_TCP_INFO,
    DROP_TRUNCATED,
    NATIVE,
    DiagSocket,
    DumpParser,
    dump_request,
    dump_request_both_families,
    parse_dump,
)
from capture.procnet import TcpState

INFO = tcp_info(
    rtt=1234,
    rttvar=567,
    total_retrans=3,
    bytes_acked=10**10,
    bytes_received=4096,
    segs_out=70000,
    segs_in=65,
    retrans=99,  # the current retransmits, not the total: must not be read as it
)
CALL = ("10.1.0.10", 40000, "10.2.0.20", 8080)
CUT_INFO = attribute(INET_DIAG_INFO, INFO)[:-8]  # its length says 8 bytes more than there are
TOO_SHORT_ATTRIBUTE = struct.pack("=HH", 2, 2)  # a length less than its own header


NOT_BUILT = "capture/_inetdiag.c was not built: `pip install -e .` needs gcc"


@pytest.fixture(params=[False, True], ids=["python-loop", "c-loop"])
def native(request: pytest.FixtureRequest) -> bool:
    """Which loop reads the messages: the Python one, or the one in C."""
    if request.param and not NATIVE:
        pytest.fail(NOT_BUILT)
    return bool(request.param)


def only(data: bytes, native: bool) -> DiagSocket:
    parser = parse_dump(data, native=native)
    assert parser.dropped == {}
    assert len(parser.sockets) == 1, parser.sockets
    return parser.sockets[0]


def test_the_request_asks_for_every_tcp_socket_of_a_family_with_tcp_info() -> None:
    request = dump_request(socket.AF_INET6, seq=7)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", request)
    family, protocol, ext, _pad, states = struct.unpack_from("=BBBBI", request, 16)
    assert (length, len(request)) == (72, 72)  # nlmsghdr + inet_diag_req_v2
    assert (kind, flags, seq, pid) == (SOCK_DIAG_BY_FAMILY, 0x301, 7, 0)  # REQUEST | DUMP
    assert (family, protocol) == (socket.AF_INET6, socket.IPPROTO_TCP)
    assert ext == 1 << (2 - 1)  # INET_DIAG_INFO
    assert states == ALL_TCP_STATES == 0b1_1111_1111_1110  # ESTABLISHED (1) to NEW_SYN_RECV (12)
    assert request[24:] == bytes(48)  # the socket id: any


def test_the_older_request_asks_for_both_families_at_once() -> None:
    request = dump_request_both_families(seq=3)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", request)
    family, src_len, dst_len, ext = request[16:20]
    states, dbs = struct.unpack_from("=II", request, 20 + 48)
    assert (length, len(request)) == (76, 76)  # nlmsghdr + inet_diag_req
    assert (kind, flags, seq, pid) == (TCPDIAG_GETSOCK, 0x301, 3, 0)
    assert (family, src_len, dst_len, ext) == (socket.AF_UNSPEC, 0, 0, 2)
    assert (states, dbs) == (ALL_TCP_STATES, 0)
    assert request[20:68] == bytes(48)


def test_the_older_requests_answers_are_read_alike(native: bool) -> None:
    data = socket_message(*CALL, info=INFO, msg_type=TCPDIAG_GETSOCK)
    data += socket_message("fd00::1", 80, "fd00::2", 999, info=INFO, msg_type=TCPDIAG_GETSOCK)
    parser = parse_dump(data + done(), native=native)
    assert [(s.family, s.local_port, s.rtt_us) for s in parser.sockets] == [
        (socket.AF_INET, 40000, 1234),
        (socket.AF_INET6, 80, 1234),
    ]
    assert (parser.done, parser.dropped) == (True, {})


def test_an_ipv4_connection_with_its_tcp_info(native: bool) -> None:
    found = only(socket_message(*CALL, info=INFO, uid=1001, inode=777), native)
    assert found == DiagSocket(
        family=socket.AF_INET,
        state=TcpState.ESTABLISHED,
        local_ip="10.1.0.10",
        local_port=40000,
        remote_ip="10.2.0.20",
        remote_port=8080,
        inode=777,
        uid=1001,
        rtt_us=1234,
        rttvar_us=567,
        total_retrans=3,
        bytes_acked=10**10,
        bytes_received=4096,
        segs_out=70000,
        segs_in=65,
    )


def test_an_ipv6_connection_in_compressed_text(native: bool) -> None:
    found = only(socket_message("fd00::1:2", 443, "fd00:0:0:0:0:0:0:9", 50000, info=INFO), native)
    assert (found.family, found.local_ip, found.local_port) == (socket.AF_INET6, "fd00::1:2", 443)
    assert (found.remote_ip, found.remote_port, found.rtt_us) == ("fd00::9", 50000, 1234)


def test_an_ipv4_mapped_connection_reads_as_ipv4_on_an_ipv6_socket(native: bool) -> None:
    found = only(socket_message(*CALL, family=socket.AF_INET6, info=INFO), native)
    assert found.family == socket.AF_INET6
    assert (found.local_ip, found.remote_ip) == ("10.1.0.10", "10.2.0.20")


@pytest.mark.parametrize(
    ("wildcard", "family"), [("0.0.0.0", socket.AF_INET), ("::", socket.AF_INET6)]
)
def test_a_listening_socket_is_in_the_dump(wildcard: str, family: int, native: bool) -> None:
    found = only(socket_message(wildcard, 8080, wildcard, 0, state=LISTEN, info=tcp_info()), native)
    assert (found.state, found.family) == (TcpState.LISTEN, family)
    assert (found.local_ip, found.local_port, found.remote_ip, found.remote_port) == (
        wildcard,
        8080,
        wildcard,
        0,
    )
    assert (found.rtt_us, found.bytes_acked) == (0, 0)


@pytest.mark.parametrize(
    ("size", "present"),
    [
        (76, ("rtt_us", "rttvar_us")),
        (TCP_INFO_3_14, ("rtt_us", "rttvar_us", "total_retrans")),
        (TCP_INFO_4_1, ("rtt_us", "rttvar_us", "total_retrans", "bytes_acked", "bytes_received")),
        (TCP_INFO_4_2, ("rtt_us", "rttvar_us", "total_retrans", "bytes_acked", "bytes_received",
                        "segs_out", "segs_in")),
        (TCP_INFO_6_1, ("rtt_us", "rttvar_us", "total_retrans", "bytes_acked", "bytes_received",
                        "segs_out", "segs_in")),
        (TCP_INFO_6_18, ("rtt_us", "rttvar_us", "total_retrans", "bytes_acked", "bytes_received",
                         "segs_out", "segs_in")),
        (TCP_INFO_4_2 - 1, ("rtt_us", "rttvar_us", "total_retrans", "bytes_acked",
                            "bytes_received")),
    ],
)  # fmt: skip
def test_tcp_info_fields_are_read_only_when_the_kernels_layout_holds_them(
    size: int, present: tuple[str, ...], native: bool
) -> None:
    full = only(socket_message(*CALL, info=INFO), native)
    found = only(socket_message(*CALL, info=INFO[:size]), native)
    for name in ("rtt_us", "rttvar_us", "total_retrans", "bytes_acked", "bytes_received",
                 "segs_out", "segs_in"):  # fmt: skip
        expected = getattr(full, name) if name in present else None
        assert getattr(found, name) == expected, name
    assert (found.local_ip, found.remote_port) == ("10.1.0.10", 8080)


def test_a_tcp_info_too_short_for_the_rtt_keeps_the_socket_and_is_counted(native: bool) -> None:
    parser = parse_dump(socket_message(*CALL, info=INFO[:75]), native=native)
    assert parser.dropped == {DROP_SHORT_TCP_INFO: 1}
    assert [(s.local_port, s.rtt_us, s.bytes_acked) for s in parser.sockets] == [
        (40000, None, None)
    ]


def test_a_time_wait_socket_has_no_tcp_info_and_no_inode(native: bool) -> None:
    found = only(socket_message(*CALL, state=TIME_WAIT, uid=0, inode=0, extra=False), native)
    assert (found.state, found.inode, found.uid) == (TcpState.TIME_WAIT, 0, 0)
    assert (found.rtt_us, found.total_retrans, found.segs_in) == (None, None, None)


def test_attributes_it_does_not_read_are_passed_over_uncounted(native: bool) -> None:
    body = diag_msg(*CALL) + attribute(99, b"whatever") + attribute(INET_DIAG_INFO, INFO)
    assert only(nlmsg(SOCK_DIAG_BY_FAMILY, body), native).rtt_us == 1234


def test_a_whole_dump_in_one_buffer_ends_at_done(native: bool) -> None:
    sockets = [
        socket_message("0.0.0.0", 80, "0.0.0.0", 0, state=LISTEN, info=INFO, inode=1),
        socket_message(*CALL, info=INFO, inode=2),
        socket_message("fd00::2", 80, "fd00::3", 1234, info=INFO[:TCP_INFO_3_14], inode=3),
        socket_message(*CALL, family=socket.AF_INET6, info=INFO, inode=4),
    ]
    after = socket_message(*CALL, info=INFO, inode=5)  # not part of this dump
    parser = parse_dump(b"".join(sockets) + nlmsg(NLMSG_NOOP, b"") + done() + after, native=native)
    assert [s.inode for s in parser.sockets] == [1, 2, 3, 4]
    assert (parser.done, parser.error, parser.dropped) == (True, None, {})


def test_a_dump_fed_a_datagram_at_a_time_ends_at_the_last(native: bool) -> None:
    parser = DumpParser(native=native)
    assert parser.feed(socket_message(*CALL, inode=1) + socket_message(*CALL, inode=2)) is False
    assert parser.feed(memoryview(bytearray(socket_message(*CALL, inode=3)))) is False
    assert parser.done is False
    assert parser.feed(done()) is True
    assert parser.feed(socket_message(*CALL, inode=4)) is True  # after the end: not read
    assert [s.inode for s in parser.sockets] == [1, 2, 3]


def test_an_error_ends_the_dump_with_its_errno(native: bool) -> None:
    parser = parse_dump(socket_message(*CALL) + error(13), native=native)
    assert (parser.done, parser.error, len(parser.sockets)) == (True, 13, 1)


def test_an_error_with_a_positive_errno_is_still_an_error(native: bool) -> None:
    parser = parse_dump(error(-5), native=native)  # malformed: the kernel sends -errno
    assert (parser.done, parser.error) == (True, 5)


def test_a_done_with_a_negative_status_is_an_error(native: bool) -> None:
    parser = parse_dump(done(-4), native=native)  # EINTR: the dump was interrupted
    assert (parser.done, parser.error) == (True, 4)


def test_an_acknowledgement_does_not_end_the_dump(native: bool) -> None:
    parser = parse_dump(error(0) + socket_message(*CALL), native=native)
    assert (parser.done, len(parser.sockets)) == (False, 1)


def test_a_done_without_a_status_ends_the_dump(native: bool) -> None:
    parser = parse_dump(nlmsg(3, b""), native=native)
    assert (parser.done, parser.error, parser.dropped) == (True, None, {})


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (nlmsg(SOCK_DIAG_BY_FAMILY, diag_msg(*CALL)[:71]), DROP_SHORT_MESSAGE),
        (nlmsg(SOCK_DIAG_BY_FAMILY, diag_msg(*CALL, family=socket.AF_UNIX)), DROP_ODD_FAMILY),
        (nlmsg(SOCK_DIAG_BY_FAMILY, diag_msg(*CALL, state=0)), DROP_BAD_STATE),
        (nlmsg(SOCK_DIAG_BY_FAMILY, diag_msg(*CALL, state=14)), DROP_BAD_STATE),
        (nlmsg(SOCK_DIAG_BY_FAMILY, diag_msg(*CALL) + CUT_INFO), DROP_BAD_ATTRIBUTE),
        (nlmsg(SOCK_DIAG_BY_FAMILY, diag_msg(*CALL) + TOO_SHORT_ATTRIBUTE), DROP_BAD_ATTRIBUTE),
        (nlmsg(SOCK_DIAG_BY_FAMILY, diag_msg(*CALL) + b"\x05\x00"), DROP_BAD_ATTRIBUTE),
        (nlmsg(16, diag_msg(*CALL)), DROP_OTHER_MESSAGE),  # a ctnetlink type, say
        (nlmsg(2, b"\xff\xff"), DROP_SHORT_MESSAGE),  # an error without its errno
    ],
)  # fmt: skip
def test_a_bad_message_is_counted_and_the_next_one_read(
    message: bytes, reason: str, native: bool
) -> None:
    parser = parse_dump(message + socket_message(*CALL, inode=9) + done(), native=native)
    assert parser.dropped == {reason: 1}
    assert [s.inode for s in parser.sockets] == [9]
    assert parser.done


def test_a_length_below_the_header_stops_the_buffer(native: bool) -> None:
    bad = struct.pack("=IHHII", 8, SOCK_DIAG_BY_FAMILY, 2, 1, 0)
    parser = parse_dump(
        socket_message(*CALL, inode=1) + bad + socket_message(*CALL, inode=2), native=native
    )
    assert parser.dropped == {DROP_BAD_LENGTH: 1}
    assert [s.inode for s in parser.sockets] == [1]


def test_a_buffer_cut_anywhere_gives_its_whole_messages_and_counts_the_cut(native: bool) -> None:
    first = socket_message(*CALL, info=INFO, inode=1)
    second = socket_message("fd00::2", 80, "fd00::3", 1234, info=INFO, inode=2)
    whole = first + second + done()
    for cut in range(len(whole)):
        parser = parse_dump(whole[:cut], native=native)
        expected = [1, 2][: (cut >= len(first)) + (cut >= len(first) + len(second))]
        assert [s.inode for s in parser.sockets] == expected, cut
        at_boundary = cut in (0, len(first), len(first) + len(second))
        assert parser.dropped == ({} if at_boundary else {DROP_TRUNCATED: 1}), cut
        assert parser.done is False


def test_a_message_claiming_more_than_the_buffer_holds_is_truncated(native: bool) -> None:
    message = bytearray(socket_message(*CALL, info=INFO))
    message[0:4] = struct.pack("=I", len(message) + 100)
    parser = parse_dump(bytes(message), native=native)
    assert (parser.sockets, parser.dropped) == ([], {DROP_TRUNCATED: 1})


# ``native`` is the same for every example of a run: no state to leak between them.
ONE_LOOP = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@ONE_LOOP
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=600))
def test_garbage_never_raises_and_every_drop_has_a_known_reason(
    native: bool, junk: bytes, at: int
) -> None:
    good = socket_message(*CALL, info=INFO)
    for data in (junk, good + junk, good[:at] + junk, junk + good):
        parser = parse_dump(data, native=native)
        assert set(parser.dropped) <= set(DROP_REASONS)
        assert all(isinstance(s, DiagSocket) for s in parser.sockets)


@ONE_LOOP
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_a_mutated_byte_never_raises(native: bool, position: int, value: int) -> None:
    data = bytearray(socket_message(*CALL, info=INFO) + socket_message(*CALL) + done())
    data[position % len(data)] = value
    parser = parse_dump(bytes(data), native=native)
    assert set(parser.dropped) <= set(DROP_REASONS)


def test_a_layout_seen_before_is_checked_not_trusted(native: bool) -> None:
    """Messages of one length but other attributes (the parser remembers layouts
    by length) are each read as they are."""
    info_last = diag_msg(*CALL) + attribute(8, b"\0") + attribute(INET_DIAG_INFO, INFO)
    info_first = diag_msg(*CALL) + attribute(INET_DIAG_INFO, INFO) + attribute(8, b"\0")
    no_info = diag_msg(*CALL) + attribute(8, b"\0") + attribute(98, INFO)
    assert len(info_last) == len(info_first) == len(no_info)
    for _ in range(2):  # the second time round, every layout has been seen
        parser = parse_dump(
            b"".join(nlmsg(SOCK_DIAG_BY_FAMILY, m) for m in (info_last, info_first, no_info)),
            native=native,
        )
        assert [s.rtt_us for s in parser.sockets] == [1234, 1234, None]
        assert parser.dropped == {}


_ADDRESSES = st.sampled_from(
    ["10.1.0.10", "10.2.0.20", "0.0.0.0", "255.255.255.255", "fd00::1", "::", "::ffff:1.2.3.4"]
)
_TCP_INFO_SIZES = st.sampled_from([None, 0, 60, 75, 76, 103, 104, 135, 136, 143, 144, 232, 280])


@st.composite
def _socket_messages(draw: st.DrawFn) -> bytes:
    """A socket message as a kernel could send it: any addresses, ports, ids,
    state and family byte, tcp_info of any length or none; and perhaps a few
    bytes after its attributes."""
    src, dst = draw(_ADDRESSES), draw(_ADDRESSES)
    v6 = ":" in src + dst
    family = draw(st.sampled_from([socket.AF_INET6] if v6 else [socket.AF_INET, socket.AF_INET6]))
    size = draw(_TCP_INFO_SIZES)
    info = None
    if size is not None:
        fields = {
            "rtt": draw(st.integers(0, 2**32 - 1)),
            "bytes_acked": draw(st.integers(0, 2**64 - 1)),
        }
        info = tcp_info(**fields)[:size]
    message = socket_message(
        src,
        draw(st.integers(0, 65535)),
        dst,
        draw(st.integers(0, 65535)),
        family=family,
        state=draw(st.integers(0, 15)),
        uid=draw(st.integers(0, 2**32 - 1)),
        inode=draw(st.integers(0, 2**32 - 1)),
        info=info,
        extra=draw(st.booleans()),
        msg_type=draw(st.sampled_from([SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK])),
    )
    tail = draw(st.binary(max_size=7))
    return nlmsg(message[4], message[16:] + tail) if tail else message


_ENDS = st.sampled_from(
    [done(), done(-4), done(7), error(13), error(-5), error(0), nlmsg(3, b""), b""]
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_socket_messages(), max_size=12),
    _ENDS,
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
    st.lists(st.integers(min_value=0), max_size=4),
)
def test_the_loop_in_c_reads_every_dump_as_the_python_loop_does(
    messages: list[bytes], end: bytes, mutations: list[tuple[int, int]], cuts: list[int]
) -> None:
    """Any dump, bytes changed, fed in pieces cut anywhere: the same sockets,
    counts and end, whichever loop reads it."""
    if not NATIVE:
        pytest.fail(NOT_BUILT)
    data = bytearray(b"".join(messages) + end + socket_message(*CALL))  # the last: after the end
    for position, value in mutations:
        data[position % len(data)] = value
    pieces = sorted({cut % len(data) for cut in cuts} | {0, len(data)})
    answers = []
    for native in (False, True):
        parser = DumpParser(native=native)
        ended = [parser.feed(memoryview(data)[a:b]) for a, b in itertools.pairwise(pieces)]
        answers.append((parser.sockets, parser.dropped, parser.done, parser.error, ended))
    assert answers[0] == answers[1]
