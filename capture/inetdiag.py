"""Netlink ``sock_diag`` (INET_DIAG) dumps of TCP sockets, as bytes in and records out. Pure.

The kernel answers a ``SOCK_DIAG_BY_FAMILY`` dump request with one
``inet_diag_msg`` per socket of the asking socket's network namespace
(listeners, connections, TIME_WAIT and request sockets alike), each followed by
attributes; the one read here is ``INET_DIAG_INFO``, the socket's
``struct tcp_info``. This module builds the request (:func:`dump_request`) and
reads the answer (:class:`DumpParser`); opening the netlink socket in a
namespace is :mod:`capture.sockdiag`'s job.

A dump walks the whole TCP hash table, and every socket in it, keeping those
of the asking namespace. Namespaces share the host's table (sized by the
host's memory: hundreds of thousands of buckets) unless
``net.ipv4.tcp_child_ehash_entries`` gave them tables of their own when they
were made. With a shared table, one dump per namespace costs namespaces x
sockets, and so does reading their /proc tables, which walk the same way;
with tables of their own, each costs its own sockets (docs/capture.md,
"Measured here", from ``tests/bench/bench_sockdiag.py``). A
``SOCK_DIAG_BY_FAMILY`` request names one family, so both take two walks; the
older ``TCPDIAG_GETSOCK`` request (:func:`dump_request_both_families`), which
the kernel still answers, takes both families in one, answered with the same
messages under that type.

It promises:

- **It never raises on content.** A message cut short, a length that does not
  add up, an odd family or state, a broken attribute list: the message is
  skipped and counted under one of the ``DROP_*`` reasons in
  :attr:`DumpParser.dropped`. Attributes it does not read are passed over
  without a count: the kernel puts several on every socket (shutdown bits,
  cgroup id, socket options), asked for or not.
- **tcp_info by its length.** ``struct tcp_info`` has grown with the kernel
  (104 bytes up to 3.14, 120 in 3.15, 136 in 4.1, 144 in 4.2, 280 in 6.18);
  a field is read only when the attribute holds it, and is None otherwise
  (and for sockets that carry no tcp_info: TIME_WAIT and request sockets).
- **The same addresses as** :mod:`capture.procnet`: dotted IPv4, compressed
  IPv6, an IPv4-mapped IPv6 address as plain IPv4.
- **Speed.** Why not pyroute2, the project's netlink library: its parser
  builds an object per message and per attribute: about 57 µs a socket, 6 s
  for a node's 100,000 sockets. As in :mod:`capture.ctnetlink`'s fast path,
  the kernel's layout is read straight from the bytes instead, with
  precompiled structs and the attribute layouts already seen checked in one
  unpack: about 1.5 µs a socket, 37 times less. That was still 0.15 s of a
  pass that #19 wants under 0.2 s, so the same loop is also written in C
  (``capture/_inetdiag.c``, built by ``pip install`` when a C compiler is
  there, used when built): about 0.5 µs a socket, most of it making the
  records. The Python loop is the reference: the unit tests run each test on
  both, and hold them to the same answers on random, cut and mangled dumps.
  ``CALLMAP_PURE_PYTHON=1`` turns the C loop off (:mod:`capture.native`).

Layouts: ``include/uapi/linux/netlink.h``, ``sock_diag.h``, ``inet_diag.h``
and ``tcp.h``. Netlink headers, ``inet_diag_msg`` and ``tcp_info`` are in host
byte order; ports and addresses in network byte order.
"""

from __future__ import annotations

import socket
import struct
from types import ModuleType
from typing import Final

import msgspec

from capture.addresses import packed_address
from capture.procnet import TcpState

__all__ = [
    "ALL_TCP_STATES",
    "DROP_BAD_ATTRIBUTE",
    "DROP_BAD_LENGTH",
    "DROP_BAD_STATE",
    "DROP_ODD_FAMILY",
    "DROP_OTHER_MESSAGE",
    "DROP_REASONS",
    "DROP_SHORT_MESSAGE",
    "DROP_SHORT_TCP_INFO",
    "DROP_TRUNCATED",
    "NATIVE",
    "NETLINK_SOCK_DIAG",
    "DiagSocket",
    "DumpParser",
    "dump_request",
    "dump_request_both_families",
    "parse_dump",
]

NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
TCPDIAG_GETSOCK: Final = 18
NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLM_F_REQUEST: Final = 0x1
NLM_F_DUMP: Final = 0x300  # NLM_F_ROOT | NLM_F_MATCH
INET_DIAG_INFO: Final = 2
ALL_TCP_STATES: Final = sum(1 << state for state in range(TcpState.ESTABLISHED, 13))
"""``idiag_states`` bits of every TCP state /proc/net/tcp shows (1 to 12,
ESTABLISHED to NEW_SYN_RECV); BOUND_INACTIVE (13) sockets are not in it."""

# Drop reasons: the keys of DumpParser.dropped.
DROP_TRUNCATED: Final = "truncated"
"""The buffer ends inside a message (or inside a message header); the rest of
the buffer is skipped."""
DROP_BAD_LENGTH: Final = "bad_length"
"""A message header's length is less than the header itself: nothing after it
can be found, so the rest of the buffer is skipped."""
DROP_SHORT_MESSAGE: Final = "short_message"
"""A socket message (or an error) too short for its fixed part."""
DROP_OTHER_MESSAGE: Final = "other_message"
"""A message of a type a TCP dump does not hold."""
DROP_ODD_FAMILY: Final = "odd_family"
"""A socket of a family other than AF_INET and AF_INET6."""
DROP_BAD_STATE: Final = "bad_state"
"""A socket in a state that is not a known TCP state."""
DROP_BAD_ATTRIBUTE: Final = "bad_attribute"
"""An attribute shorter than its header or reaching past its message."""
DROP_SHORT_TCP_INFO: Final = "short_tcp_info"
"""A tcp_info too short to hold the RTT (76 bytes): the socket is kept, its
tcp_info fields are None. No kernel has sent one this short."""
DROP_REASONS: Final = (
    DROP_TRUNCATED,
    DROP_BAD_LENGTH,
    DROP_SHORT_MESSAGE,
    DROP_OTHER_MESSAGE,
    DROP_ODD_FAMILY,
    DROP_BAD_STATE,
    DROP_BAD_ATTRIBUTE,
    DROP_SHORT_TCP_INFO,
)

_SOCKET_MESSAGES = frozenset({SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK})  # as the request's type
_NLMSG_HEADER = 16
_DIAG_MSG_END = _NLMSG_HEADER + 72  # nlmsghdr + inet_diag_msg
_NLMSG_START = struct.Struct("=IH")  # nlmsg_len, nlmsg_type
# nlmsghdr (len, type; flags, seq, pid), then inet_diag_msg: family, state, timer,
# retrans, the socket id (ports apart, below; src[16], dst[16], if, cookie[2]),
# expires, rqueue, wqueue, uid, inode.
_DIAG_MSG = struct.Struct("=IH10xBB2x4x16s16s24xII")
_PORTS = struct.Struct("!HH")
_RTATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
_REQUEST = struct.Struct("=IHHIIBBBxI48x")  # nlmsghdr + inet_diag_req_v2 (empty id)
# nlmsghdr + inet_diag_req: family, src_len, dst_len, ext, id (empty), states, dbs
_LEGACY_REQUEST = struct.Struct("=IHHIIBBBB48xII")
# struct tcp_info, by how much of it there is: rtt and rttvar end at 76 bytes,
# total_retrans at 104, bytes_acked and bytes_received at 136, segs_out and
# segs_in at 144.
_INFO_144 = struct.Struct("=68xII24xI16xQQII")
_INFO_136 = struct.Struct("=68xII24xI16xQQ")
_INFO_104 = struct.Struct("=68xII24xI")
_INFO_76 = struct.Struct("=68xII")


def _loop_in_c() -> ModuleType | None:
    """``capture._inetdiag`` when it was built."""
    try:
        from capture import _inetdiag
    except ImportError:  # installed without a C compiler: the Python loop reads dumps
        return None
    return _inetdiag


_inetdiag = _loop_in_c()
NATIVE: Final = _inetdiag is not None
"""Whether the message loop in C (``capture/_inetdiag.c``) was built with this
install; :class:`DumpParser` uses it by default when it was."""
_STATE_BY_NUMBER = {state.value: state for state in TcpState}
_STATES: tuple[TcpState | None, ...] = tuple(_STATE_BY_NUMBER.get(n) for n in range(256))


class DiagSocket(msgspec.Struct, frozen=True, gc=False):
    """One TCP socket of a sock_diag dump.

    A frozen msgspec Struct rather than a frozen dataclass: a node has one per
    socket every scan, and it is built several times faster."""

    family: int
    """``socket.AF_INET`` or ``socket.AF_INET6`` (even when the addresses are
    IPv4-mapped and so reported as IPv4)."""
    state: TcpState
    local_ip: str
    """Local address, canonical text; ``0.0.0.0`` or ``::`` for a wildcard listener."""
    local_port: int
    remote_ip: str
    """Remote address; ``0.0.0.0`` or ``::`` for a listener."""
    remote_port: int
    inode: int
    """Socket inode (as in ``/proc/<pid>/fd`` links); 0 for TIME_WAIT and request sockets."""
    uid: int
    rtt_us: int | None = None
    """Smoothed round-trip time (``tcpi_rtt``), µs; None without tcp_info."""
    rttvar_us: int | None = None
    total_retrans: int | None = None
    """Segments retransmitted over the connection's life (``tcpi_total_retrans``)."""
    bytes_acked: int | None = None
    """Bytes sent and acknowledged by the peer (kernel 4.1 and later)."""
    bytes_received: int | None = None
    """Bytes received in order (kernel 4.1 and later)."""
    segs_out: int | None = None
    """Segments sent, retransmissions included (kernel 4.2 and later)."""
    segs_in: int | None = None


def dump_request(family: int, *, seq: int = 1, states: int = ALL_TCP_STATES) -> bytes:
    """The ``SOCK_DIAG_BY_FAMILY`` request to dump every TCP socket of ``family``
    (AF_INET or AF_INET6) in ``states`` (``1 << TcpState`` bits), with tcp_info."""
    return _REQUEST.pack(
        _REQUEST.size,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        0,  # nlmsg_pid: to the kernel
        family,
        socket.IPPROTO_TCP,
        1 << (INET_DIAG_INFO - 1),  # idiag_ext
        states,
    )


def dump_request_both_families(*, seq: int = 1, states: int = ALL_TCP_STATES) -> bytes:
    """The ``TCPDIAG_GETSOCK`` request to dump every TCP socket of both families
    in ``states``, with tcp_info: one walk of the hash table instead of two.
    The kernel keeps this request for compatibility; one that refuses it (an
    NLMSG_ERROR) is asked a family at a time with :func:`dump_request`."""
    return _LEGACY_REQUEST.pack(
        _LEGACY_REQUEST.size,
        TCPDIAG_GETSOCK,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        0,
        socket.AF_UNSPEC,  # idiag_family: not looked at by the kernel
        0,
        0,
        1 << (INET_DIAG_INFO - 1),
        states,
        0,
    )


_Buffer = bytes | bytearray | memoryview
_Layout = tuple[struct.Struct, tuple[int, ...], struct.Struct | None, int]
# The layouts of the messages seen, by message length: a struct that unpacks the
# attribute headers up to INET_DIAG_INFO (or all of them, without it) in one go,
# the headers it must find, and tcp_info's struct and offset. A node's kernel
# sends a few layouts only (by family, state, tcp_info size), so most sockets
# cost one check instead of a walk through five or six attributes.
_LAYOUTS: dict[int, _Layout] = {}
_MAX_LAYOUTS = 1024


def _info_struct(size: int) -> struct.Struct | None:
    """The struct for the tcp_info fields a tcp_info of ``size`` bytes holds."""
    if size >= 144:
        return _INFO_144
    if size >= 136:
        return _INFO_136
    if size >= 104:
        return _INFO_104
    if size >= 76:
        return _INFO_76
    return None


class DumpParser:
    """The answer to one dump request, fed a datagram (or any run of whole
    messages) at a time, in order, until :meth:`feed` says it ended."""

    __slots__ = ("_names4", "_names6", "_native", "done", "dropped", "error", "sockets")

    def __init__(
        self,
        sockets: list[DiagSocket] | None = None,
        dropped: dict[str, int] | None = None,
        *,
        native: bool = NATIVE,
    ) -> None:
        """``sockets`` and ``dropped``, when given, are added to: several dumps
        (one a family) can gather into one list. The messages are read by the
        loop in C when ``native`` (by default when it was built: :data:`NATIVE`;
        the same answers, three to four times faster: docs/capture.md), by the
        Python loop otherwise."""
        self.sockets: list[DiagSocket] = [] if sockets is None else sockets
        self.dropped: dict[str, int] = {} if dropped is None else dropped
        """Messages skipped (and short tcp_info), by ``DROP_*`` reason."""
        self.done = False
        """The dump ended: NLMSG_DONE, or an NLMSG_ERROR."""
        self.error: int | None = None
        """The errno the kernel ended the dump with (a nonzero NLMSG_ERROR, or a
        negative NLMSG_DONE status); None when it ended well or has not ended."""
        # Canonical text by raw 16-byte address field: in one namespace the same
        # few local addresses repeat on every line.
        self._names4: dict[bytes, str] = {}
        self._names6: dict[bytes, str] = {}
        if native and _inetdiag is None:
            raise RuntimeError("capture/_inetdiag.c was not built with this install")
        self._native = _inetdiag if native else None

    def feed(self, data: _Buffer) -> bool:
        """Read the messages in ``data``; True once the dump has ended (what
        follows the end is not read)."""
        if self.done:
            return True
        if self._native is None:
            return self._feed(data)
        ended: int | None = self._native.feed(
            data,
            self.sockets,
            self.dropped,
            self._names4,
            self._names6,
            _STATES,
            DiagSocket,
            DROP_REASONS,
        )
        if ended is None:
            return False
        self.done = True
        self.error = ended or None
        return True

    def _feed(self, data: _Buffer) -> bool:
        """:meth:`feed` in Python: the reference the loop in C is held to."""
        end = len(data)
        offset = 0
        sockets = self.sockets
        names4, names6 = self._names4, self._names6
        while offset < end:
            if end - offset < _NLMSG_HEADER:
                self._drop(DROP_TRUNCATED)
                break
            if end - offset >= _DIAG_MSG_END:  # room for a socket: read it with its header
                length, kind, family, number, src, dst, uid, inode = _DIAG_MSG.unpack_from(
                    data, offset
                )
            else:
                length, kind = _NLMSG_START.unpack_from(data, offset)
            if length < _NLMSG_HEADER:
                self._drop(DROP_BAD_LENGTH)
                break
            stop = offset + length
            if stop > end:
                self._drop(DROP_TRUNCATED)
                break
            if kind in _SOCKET_MESSAGES and length >= _DIAG_MSG_END:
                # The hot path: one socket. Kept inline, without helper calls.
                state = _STATES[number]
                # AF_INET and AF_INET6 as numbers: no global lookups per socket.
                names = names4 if family == 2 else names6 if family == 10 else None
                if state is None:
                    self._drop(DROP_BAD_STATE)
                elif names is None:
                    self._drop(DROP_ODD_FAMILY)
                else:
                    local_ip = names.get(src)
                    if local_ip is None:
                        local_ip = names[src] = _address(family, src)
                    remote_ip = names.get(dst)
                    if remote_ip is None:
                        remote_ip = names[dst] = _address(family, dst)
                    sport, dport = _PORTS.unpack_from(data, offset + 20)
                    layout = _LAYOUTS.get(length)
                    extra: tuple[int, ...] | None
                    if layout is not None and layout[0].unpack_from(data, offset) == layout[1]:
                        info = layout[2]
                        extra = () if info is None else info.unpack_from(data, offset + layout[3])
                    else:
                        extra = self._walk(data, offset, stop)
                    if extra is not None:
                        sockets.append(
                            DiagSocket(
                                family, state, local_ip, sport, remote_ip, dport, inode, uid, *extra
                            )
                        )
            elif kind in _SOCKET_MESSAGES:
                self._drop(DROP_SHORT_MESSAGE)
            elif kind in (NLMSG_DONE, NLMSG_ERROR):
                if self._end(data, offset, stop, kind):
                    return True
            elif kind != NLMSG_NOOP:
                self._drop(DROP_OTHER_MESSAGE)
            offset = (stop + 3) & ~3  # NLMSG_ALIGN
        return False

    def _walk(self, data: _Buffer, offset: int, stop: int) -> tuple[int, ...] | None:
        """A socket message's tcp_info fields (as many as it holds, perhaps none)
        by walking its attributes, learning its layout on the way; None when
        they are broken."""
        headers: list[tuple[int, int, int]] = []  # where, size, type
        at = offset + _DIAG_MSG_END
        info: struct.Struct | None = None
        while at + 4 <= stop:
            size, kind = _RTATTR.unpack_from(data, at)
            if size < 4 or at + size > stop:
                self._drop(DROP_BAD_ATTRIBUTE)
                return None
            headers.append((at - offset, size, kind))
            if kind == INET_DIAG_INFO:
                info = _info_struct(size - 4)
                if info is None:  # not learnt: counted each time
                    self._drop(DROP_SHORT_TCP_INFO)
                    return ()
                break
            at += (size + 3) & ~3
        else:
            if at < stop:  # 1 to 3 bytes: too short for an attribute header
                self._drop(DROP_BAD_ATTRIBUTE)
                return None
        if len(_LAYOUTS) < _MAX_LAYOUTS:
            pattern, expected, last = ["="], list[int](), 0
            for where, size, kind in headers:
                pattern.append(f"{where - last}xHH")
                expected += (size, kind)
                last = where + 4
            _LAYOUTS[stop - offset] = (struct.Struct("".join(pattern)), tuple(expected), info, last)
        if info is None:
            return ()
        fields: tuple[int, ...] = info.unpack_from(data, at + 4)
        return fields

    def _end(self, data: _Buffer, offset: int, stop: int, kind: int) -> bool:
        """NLMSG_DONE or NLMSG_ERROR: True when it ends the dump."""
        if stop < offset + _NLMSG_HEADER + 4:
            if kind == NLMSG_DONE:  # the status int is optional in old kernels' DONE
                self.done = True
                return True
            self._drop(DROP_SHORT_MESSAGE)
            return False
        (status,) = _ERRNO.unpack_from(data, offset + _NLMSG_HEADER)
        if kind == NLMSG_ERROR and status == 0:
            return False  # an acknowledgement, not an end: a dump ends with DONE
        self.done = True
        if status < 0:
            self.error = -status
        elif kind == NLMSG_ERROR:  # a positive errno: malformed, but still a refusal
            self.error = status
        return True

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def parse_dump(data: _Buffer, *, native: bool = NATIVE) -> DumpParser:
    """A parser fed all of ``data`` at once: the sockets, drops and end of a
    buffer (``native`` as for :class:`DumpParser`)."""
    parser = DumpParser(native=native)
    parser.feed(data)
    return parser


def _address(family: int, raw: bytes) -> str:
    """An address field of the socket id (16 bytes, an IPv4 one in the first 4) as
    canonical text (see the module's promises)."""
    return packed_address(raw[:4] if family == socket.AF_INET else raw)
