"""DNS responses on the wire -> the addresses a client was told, or why not.

This is the capture agent's pure DNS core: bytes in, a `DnsResponse` or a drop
reason out, no I/O, no state between calls (but for a bounded memo of the texts
of names and addresses, `capture.texts`, invisible in results). It promises:

* `parse_response` never raises, whatever the bytes. Every overrun and every
  rule broken on the wire raises one private error inside the parser, which is
  turned into `DROP_MALFORMED` at the top; nothing else is caught.
* Only a NOERROR response (QR=1, opcode QUERY, TC=0) to one IN A or IN AAAA
  question, whose answer section leads from the question name to addresses of
  the asked type, becomes a `DnsResponse`. Everything else is one of the
  `DROP_*` strings, all listed in `DROP_REASONS`, for the caller to count.
* CNAME chains are followed from the question name; `cnames` lists the targets
  in chain order, `answers` the addresses of the last name (answer order,
  duplicates removed), `ttl` the smallest TTL of every record used (RFC 2181:
  TTLs with the top bit set count as 0).
* Compression pointers must point strictly backwards, before the start of the
  piece of name that holds them, and not into the 12-byte header; that makes
  loops impossible. No real name needs more than 128 pointers, so a longer
  chain is malformed, as are names over 255 octets on the wire, labels over
  63 and the obsolete 0x40/0x80 label types. Decoded names are memoised per
  message by offset, so a hostile message costs time linear in its size.
* Names are text, lower case (ASCII only, as DNS compares names), without the
  trailing dot; the root name is ".". Bytes outside ``a-z 0-9 - _ *`` are
  escaped like RFC 1035 master files: ``\\.`` for a dot inside a label, ``\\\\``
  for a backslash and ``\\DDD`` (three decimal digits) for every other byte.
  So a name is always plain ASCII from ``[a-z0-9_*.\\-]``: it can never carry a
  newline, a quote, a space, a comma or a non-ASCII character into a log line
  or an output format, two names that DNS tells apart never share a text, and
  `dns.name.from_text` reads the text back to the same name.
* Addresses are written exactly as ``str(ipaddress.ip_address(...))`` would.

The usual response (one question, and every answer an address of the asked
type for the question name itself, whose labels need no escapes) is read in C
when ``capture/_dnsfast.c`` was built (`NATIVE_PARSE`); the C code only ever
makes that one kind of `DnsResponse` and hands everything else to the Python
parser, the reference, which the tests hold it to: the results are identical.

Authority and additional sections are not read: they cannot change which
addresses answered the question (so extended RCODEs in EDNS OPT records go
unseen; such responses have no answers and end as `DROP_NO_ADDRESS`). DNS over
TCP is split statelessly, segment by segment: see `split_tcp_messages`.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Final

import msgspec

from capture.texts import Texts

DROP_MALFORMED: Final = "malformed"
DROP_NOT_RESPONSE: Final = "not_response"
DROP_UNSUPPORTED_OPCODE: Final = "unsupported_opcode"
DROP_TRUNCATED: Final = "truncated"
DROP_NXDOMAIN: Final = "nxdomain"
DROP_SERVFAIL: Final = "servfail"
DROP_REFUSED: Final = "refused"
DROP_OTHER_RCODE: Final = "other_rcode"
DROP_NO_QUESTION: Final = "no_question"
DROP_UNSUPPORTED_QCLASS: Final = "unsupported_qclass"
DROP_UNSUPPORTED_QTYPE: Final = "unsupported_qtype"
DROP_NO_ADDRESS: Final = "no_address"
DROP_CNAME_LOOP: Final = "cname_loop"
DROP_TCP_PARTIAL: Final = "tcp_partial"

#: Every reason `parse_response` and `split_tcp_messages` can give, so that
#: callers can register all counters up front and a zero is visible.
DROP_REASONS: Final = (
    DROP_MALFORMED,
    DROP_NOT_RESPONSE,
    DROP_UNSUPPORTED_OPCODE,
    DROP_TRUNCATED,
    DROP_NXDOMAIN,
    DROP_SERVFAIL,
    DROP_REFUSED,
    DROP_OTHER_RCODE,
    DROP_NO_QUESTION,
    DROP_UNSUPPORTED_QCLASS,
    DROP_UNSUPPORTED_QTYPE,
    DROP_NO_ADDRESS,
    DROP_CNAME_LOOP,
    DROP_TCP_PARTIAL,
)

_RCODE_DROPS: Final = {2: DROP_SERVFAIL, 3: DROP_NXDOMAIN, 5: DROP_REFUSED}

# id, flags, qdcount, ancount (nscount and arcount are not needed)
_unpack_header = struct.Struct("!HHHH").unpack_from
_unpack_question_tail = struct.Struct("!HH").unpack_from  # qtype, qclass
_unpack_rr = struct.Struct("!HHIH").unpack_from  # type, class, ttl, rdlength
_unpack_pointer_rr = struct.Struct("!HHHIH").unpack_from  # the same after a 2-byte name
_ntop = socket.inet_ntop

_HEADER_SIZE: Final = 12
_POINTER_TO_QNAME: Final = 0xC000 | _HEADER_SIZE
_MAX_NAME_WIRE: Final = 255
_MAX_LABELS: Final = 127  # one-octet labels fill 255 octets with 127 of them
# Compressors point from a label run to the rest of a name, so a real name has
# no more pointers than labels; a longer chain is pointers to pointers.
_MAX_SEGMENTS: Final = _MAX_LABELS + 1
_TYPE_CNAME: Final = 5
_CLASS_IN: Final = 1
_TTL_NEGATIVE: Final = 0x80000000

_SAFE_BYTES: Final = b"abcdefghijklmnopqrstuvwxyz0123456789_*-"
_LABEL_SAFE: Final = frozenset(_SAFE_BYTES)
_SAFE_OR_DOT: Final = _SAFE_BYTES + b"."
_SHORT_LABEL: Final = 0x2A  # lengths below "*", the lowest safe byte: see _read_labels
# Length octets of short labels -> ".", ASCII upper case -> lower case.
_DOTTED_LOWER: Final = bytes(
    0x2E if 0 < b < _SHORT_LABEL else b + 32 if 0x41 <= b <= 0x5A else b for b in range(256)
)


class DnsResponse(msgspec.Struct, frozen=True, gc=False):
    """The addresses one DNS response gave for the name it was asked (a frozen
    msgspec Struct: one is made per response, ten times faster than a dataclass)."""

    qname: str  # the question name, as text described in the module docstring
    qtype: str  # "A" or "AAAA"
    answers: tuple[str, ...]  # addresses of the chain's last name, never empty
    cnames: tuple[str, ...]  # CNAME targets from qname onwards, in chain order
    ttl: int  # smallest TTL among the CNAME and address records used
    msg_id: int  # with ports and addresses, tells one response seen on two interfaces


class _Malformed(Exception):
    """The bytes break a wire-format rule; never escapes this module."""


def _parser_in_c() -> Callable[[bytes], DnsResponse | None] | None:
    """``capture._dnsfast.parse``, told the type it makes, when it was built."""
    try:
        from capture import _dnsfast
    except ImportError:  # installed without a C compiler: Python reads every response
        return None
    _dnsfast.set_response_type(DnsResponse)
    return _dnsfast.parse


_fast = _parser_in_c()
NATIVE_PARSE: Final = _fast is not None
"""Whether the usual response is read in C (``capture/_dnsfast.c`` was built with
this install); `parse_response` tries it first by default when it was."""


def parse_response(
    data: bytes | bytearray | memoryview, *, native: bool = NATIVE_PARSE
) -> DnsResponse | str:
    """Decode one DNS message; return what it answered or a `DROP_*` reason.

    With ``native`` (the default when it was built), the C path reads the usual
    response first; ``native=False`` reads every message in Python only."""
    wire = data if isinstance(data, bytes) else bytes(data)
    if native and _fast is not None:
        found = _fast(wire)
        if found is not None:
            return found
    try:
        return _parse(wire)
    except _Malformed:
        return DROP_MALFORMED


def _parse(data: bytes) -> DnsResponse | str:
    end = len(data)
    if end < _HEADER_SIZE:
        raise _Malformed
    msg_id, flags, qdcount, ancount = _unpack_header(data, 0)
    if not flags & 0x8000:
        return DROP_NOT_RESPONSE
    if flags & 0x7800:  # opcode other than QUERY: NOTIFY, UPDATE, ...
        return DROP_UNSUPPORTED_OPCODE
    # A truncated response is checked before the RCODE because the client will
    # retry over TCP and that retry is the answer worth counting by its RCODE.
    if flags & 0x0200:
        return DROP_TRUNCATED
    rcode = flags & 0x000F
    if rcode:
        return _RCODE_DROPS.get(rcode, DROP_OTHER_RCODE)
    if qdcount == 0:
        return DROP_NO_QUESTION
    if qdcount != 1:  # RFC 9619: a message holds at most one question
        raise _Malformed

    # The question name cannot hold a pointer (nothing precedes it to point
    # at), so it is one segment of labels and its zero byte.
    qname, pos = _read_labels(data, _HEADER_SIZE, end)
    if data[pos] != 0 or pos + 5 > end or pos + 1 - _HEADER_SIZE > _MAX_NAME_WIRE:
        raise _Malformed
    qtype_code, qclass = _unpack_question_tail(data, pos + 1)
    question_end = pos + 1
    pos += 5
    if qclass != _CLASS_IN:
        return DROP_UNSUPPORTED_QCLASS
    address_type = _ADDRESS_TYPES.get(qtype_code)
    if address_type is None:
        return DROP_UNSUPPORTED_QTYPE
    qtype, rdata_size, address_text = address_type

    # The usual answer first: every record an address of the type asked for the
    # question name itself (its owner a pointer to it), class IN. Read in one pass,
    # without the general loop's bookkeeping; at the first record of any other kind
    # (a CNAME, another class, an odd pointer or size) the general loop below
    # reads them all again from the first.
    plain: list[str] = []
    lowest = _TTL_NEGATIVE
    step = 12 + rdata_size
    at = pos
    for _ in range(ancount):
        if at + step > end:
            break
        word, rtype, rclass, ttl, rdlength = _unpack_pointer_rr(data, at)
        if word != _POINTER_TO_QNAME or rtype != qtype_code or rclass != _CLASS_IN:
            break
        if rdlength != rdata_size:
            break
        if ttl >= _TTL_NEGATIVE:  # RFC 2181 section 8: read as zero
            ttl = 0
        if ttl < lowest:
            lowest = ttl
        plain.append(address_text(data[at + 12 : at + step]))
        at += step
    else:
        if plain:
            return DnsResponse(
                qname or ".",
                qtype,
                _distinct(plain),
                (),
                lowest,
                msg_id,
            )

    memo = {_HEADER_SIZE: (qname, question_end - _HEADER_SIZE)}
    cname_of: dict[str, tuple[str, int]] = {}  # owner -> (target, ttl)
    records: list[tuple[str, str, int]] = []  # (owner, address, ttl) in answer order
    for _ in range(ancount):
        # Fast path for the usual owner name, a pointer to a name read before,
        # unpacked together with the fixed fields. Every key in `memo` is a
        # name start before `pos`, so a hit is a valid backward pointer; a
        # first word below 0xC000 is no pointer and gives a negative key.
        hit = None
        if pos + 12 <= end:
            word, rtype, rclass, ttl, rdlength = _unpack_pointer_rr(data, pos)
            hit = memo.get(word - 0xC000)
        if hit is not None:
            owner = hit[0]
            pos += 12
        else:
            owner, pos = _read_name(data, pos, memo)
            if pos + 10 > end:
                raise _Malformed
            rtype, rclass, ttl, rdlength = _unpack_rr(data, pos)
            pos += 10
        rdata_end = pos + rdlength
        if rdata_end > end:
            raise _Malformed
        if rclass == _CLASS_IN:
            if ttl >= _TTL_NEGATIVE:  # RFC 2181 section 8: read as zero
                ttl = 0
            if rtype == qtype_code:
                if rdlength != rdata_size:
                    raise _Malformed
                records.append((owner, address_text(data[pos:rdata_end]), ttl))
            elif rtype == _TYPE_CNAME:
                target, after = _read_name(data, pos, memo)
                if after != rdata_end:
                    raise _Malformed
                # A name has at most one CNAME; if a server repeats it, the
                # first one is what a resolver would have followed.
                cname_of.setdefault(owner, (target, ttl))
        pos = rdata_end

    name = qname
    chain: list[str] = []
    lowest = _TTL_NEGATIVE  # above every TTL once those are clamped
    if cname_of:
        seen = {qname}
        while (link := cname_of.get(name)) is not None:
            name, ttl = link
            if name in seen:
                return DROP_CNAME_LOOP
            seen.add(name)
            chain.append(name or ".")
            if ttl < lowest:
                lowest = ttl
    answers: list[str] = []
    for owner, address, ttl in records:
        if owner == name:
            answers.append(address)
            if ttl < lowest:
                lowest = ttl
    if not answers:
        return DROP_NO_ADDRESS
    return DnsResponse(
        qname or ".",
        qtype,
        _distinct(answers),
        tuple(chain),
        lowest,
        msg_id,
    )


def _distinct(addresses: list[str]) -> tuple[str, ...]:
    """The addresses without repeats, in answer order (most answers hold one)."""
    return tuple(dict.fromkeys(addresses)) if len(addresses) > 1 else (addresses[0],)


def _read_name(data: bytes, start: int, memo: dict[int, tuple[str, int]]) -> tuple[str, int]:
    """Decode the name at `start`; return its text and the offset just past it.

    A name is a run of labels ended by a zero byte or by a pointer to the rest
    of the name elsewhere; each run is a "segment". Every segment start is
    remembered in `memo` as (text, wire length). Pointers only go backwards,
    so `start`, which lies past every name read so far, is never in `memo`.
    """
    end = len(data)
    # (segment start, text of its own labels, wire octets before it)
    pending: list[tuple[int, str, int]] = []
    wire = 0
    after = -1
    segment = start
    for _ in range(_MAX_SEGMENTS):
        head, pos = _read_labels(data, segment, end)
        pending.append((segment, head, wire))
        wire += pos - segment
        if wire >= _MAX_NAME_WIRE:
            raise _Malformed
        length = data[pos]
        if length == 0:
            pos += 1
            tail = ("", 1)
            break
        if length < 0xC0 or pos + 1 >= end:  # 0x40 and 0x80: obsolete label types
            raise _Malformed
        target = ((length & 0x3F) << 8) | data[pos + 1]
        if after < 0:
            after = pos + 2
        # Strictly backwards, before this segment: every hop lowers the
        # offset, so no loop can exist.
        if target >= segment or target < _HEADER_SIZE:
            raise _Malformed
        segment = target
        cached = memo.get(target)
        if cached is not None:
            tail = cached
            break
    else:
        raise _Malformed
    if after < 0:  # no pointer: the name ends at its zero byte
        after = pos
    text, tail_len = tail
    if wire + tail_len > _MAX_NAME_WIRE:
        raise _Malformed
    for seg_start, head, before in reversed(pending):
        if head:
            text = f"{head}.{text}" if text else head
        memo[seg_start] = (text, wire - before + tail_len)
    return text, after


def _read_labels(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """Read the labels from `pos` on; return their text and where they stop.

    They stop at the zero byte or the pointer that ends the segment, which is
    left for the caller to read. The fast path turns the whole run into text
    with two C-level translations: length octets become dots, which is only
    unambiguous while every length is below the first safe byte ("*", 42) and
    no content byte is itself a dot or below 42; anything else (long labels,
    escapes) takes `_read_labels_slowly`.
    """
    start = pos
    for count in range(_MAX_LABELS + 1):  # noqa: B007 (count is used after the loop)
        if pos >= end:  # also catches a label running past the end
            raise _Malformed
        length = data[pos]
        if not 0 < length < _SHORT_LABEL:
            break
        pos += length + 1
    else:
        raise _Malformed
    if 0 < length < 64:
        return _read_labels_slowly(data, start, end)
    if count == 0:
        return "", pos
    dotted = data[start:pos].translate(_DOTTED_LOWER)
    if dotted.count(0x2E) == count and not dotted.translate(None, _SAFE_OR_DOT):
        return _name_text(dotted), pos
    return _read_labels_slowly(data, start, end)


def _read_labels_slowly(data: bytes, pos: int, end: int) -> tuple[str, int]:
    texts: list[str] = []
    for _ in range(_MAX_LABELS + 1):
        if pos >= end:
            raise _Malformed
        length = data[pos]
        if not 0 < length < 64:
            return ".".join(texts), pos
        pos += 1
        texts.append(_escape_label(data[pos : pos + length].lower()))
        pos += length
    raise _Malformed


def _escape_label(label: bytes) -> str:
    parts = []
    for byte in label:
        if byte in _LABEL_SAFE:
            parts.append(chr(byte))
        elif byte == 0x2E or byte == 0x5C:  # "." and "\\" keep the short escape
            parts.append("\\" + chr(byte))
        else:
            parts.append(f"\\{byte:03d}")
    return "".join(parts)


def _ipv4_text(packed: bytes) -> str:
    return _ntop(socket.AF_INET, packed)


def _ipv6_text(packed: bytes) -> str:
    text = _ntop(socket.AF_INET6, packed)
    # glibc writes IPv4-compatible and IPv4-mapped IPv6 addresses with a dotted
    # tail; ipaddress decides those, so that every part of callmap agrees on
    # the text of an address (joins by IP depend on it).
    if "." in text:
        return str(ipaddress.IPv6Address(packed))
    return text


def _dotted_text(dotted: bytes) -> str:
    """A run of labels translated to ``.label.label``, as text without its first dot."""
    return dotted[1:].decode("ascii")


_name_text = Texts(_dotted_text).text
# qtype code (A, AAAA) -> (text, rdata length, the text of an address's rdata)
_ADDRESS_TYPES: Final = {
    1: ("A", 4, Texts(_ipv4_text).text),
    28: ("AAAA", 16, Texts(_ipv6_text).text),
}
