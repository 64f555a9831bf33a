"""Parse the text of ``/proc/<pid>/net/tcp`` and ``/proc/<pid>/net/tcp6``.

This is the sans-IO core of the socket-table capture: text (``str`` or ``bytes``)
in, :class:`TcpSocket` records out. It promises:

- **It never raises on content.** A line that is not a socket entry (the header,
  a short line, bad hex, garbage) is skipped and counted under one of the
  ``SKIP_*`` reasons in :attr:`TcpTable.skipped`.
- **Both tables, one function.** A line's family is told by its own address
  width (8 hex digits for IPv4, 32 for IPv6), so ``tcp`` and ``tcp6`` text may
  even be concatenated.
- **Canonical address strings.** IPv4 as dotted quad, IPv6 in the compressed
  form of :func:`socket.inet_ntop`; an IPv4-mapped IPv6 address
  (``::ffff:a.b.c.d``) is reported as plain IPv4, so a dual-stack socket and an
  IPv4 socket for the same peer compare equal.
- **Speed.** One ``str.split`` per line, no regex; address and port decodes
  are memoised per call, because in one namespace the same few local
  addresses and listening ports repeat on every line.

The kernel prints each address as the ``%08X`` of the 32-bit words as they
lie in memory, so the hex depends on the byte order of the node that wrote
it. ``byteorder`` defaults to ``"little"`` (x86-64, arm64); the /proc walker
passes :data:`sys.byteorder`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from capture.addresses import packed_address

__all__ = [
    "SKIP_BAD_ADDRESS",
    "SKIP_BAD_NUMBER",
    "SKIP_BAD_PORT",
    "SKIP_BAD_STATE",
    "SKIP_BLANK",
    "SKIP_HEADER",
    "SKIP_REASONS",
    "SKIP_SHORT",
    "ByteOrder",
    "TcpSocket",
    "TcpState",
    "TcpTable",
    "decode_address",
    "parse_tcp_table",
]

ByteOrder = Literal["little", "big"]


class TcpState(IntEnum):
    """TCP states as numbered in the kernel's ``include/net/tcp_states.h``."""

    ESTABLISHED = 0x01
    SYN_SENT = 0x02
    SYN_RECV = 0x03
    FIN_WAIT1 = 0x04
    FIN_WAIT2 = 0x05
    TIME_WAIT = 0x06
    CLOSE = 0x07
    CLOSE_WAIT = 0x08
    LAST_ACK = 0x09
    LISTEN = 0x0A
    CLOSING = 0x0B
    NEW_SYN_RECV = 0x0C
    BOUND_INACTIVE = 0x0D


# Skip reasons: the keys of TcpTable.skipped.
SKIP_BLANK = "blank"
"""An empty or all-whitespace line."""
SKIP_HEADER = "header"
"""The column header line (``sl local_address ...``)."""
SKIP_SHORT = "short_line"
"""Fewer columns than a socket entry has (truncated or garbage)."""
SKIP_BAD_STATE = "bad_state"
"""The ``st`` column is not the hex of a known TCP state."""
SKIP_BAD_ADDRESS = "bad_address"
"""An endpoint's address is not 8 or 32 hex digits, or the two ends differ in
width. Endpoints are cut at a fixed width (``<address>:<4 hex>``), so a port of
the wrong width also lands here."""
SKIP_BAD_PORT = "bad_port"
"""A port is not 4 hex digits, or is not preceded by ``:``."""
SKIP_BAD_NUMBER = "bad_number"
"""The ``uid`` or ``inode`` column is not a decimal number."""

SKIP_REASONS = (
    SKIP_BLANK,
    SKIP_HEADER,
    SKIP_SHORT,
    SKIP_BAD_STATE,
    SKIP_BAD_ADDRESS,
    SKIP_BAD_PORT,
    SKIP_BAD_NUMBER,
)

# Column positions in a socket line; the kernel prints more columns after inode
# (refcount, pointer, timers) and their number varies by state, so only a
# minimum count is checked.
_COL_LOCAL, _COL_REMOTE, _COL_STATE, _COL_UID, _COL_INODE = 1, 2, 3, 7, 9
_MIN_COLUMNS = 10

# Both cases, so that the common case is one dict lookup and lower-case hex
# (never printed by the kernel, but valid hex) is still accepted.
_STATE_BY_HEX: dict[str, TcpState] = {}
for _state in TcpState:
    _STATE_BY_HEX[f"{_state.value:02X}"] = _state
    _STATE_BY_HEX[f"{_state.value:02x}"] = _state
del _state


@dataclass(frozen=True, slots=True)
class TcpSocket:
    """One line of a ``/proc/net/tcp{,6}`` table."""

    local_ip: str
    """Local address, canonical text (IPv4-mapped IPv6 is given as IPv4)."""
    local_port: int
    remote_ip: str
    """Remote address; ``0.0.0.0`` or ``::`` for a listener."""
    remote_port: int
    state: TcpState
    inode: int
    """Socket inode (as in ``/proc/<pid>/fd`` links); 0 for TIME_WAIT entries."""
    uid: int
    """Owner's uid as seen from the reader's user namespace."""
    ipv6: bool
    """True when the line came from a tcp6 table (an AF_INET6 socket), even if
    its addresses are IPv4-mapped and therefore reported as IPv4."""


@dataclass(frozen=True, slots=True)
class TcpTable:
    """The outcome of parsing one table's text."""

    sockets: tuple[TcpSocket, ...]
    skipped: dict[str, int] = field(default_factory=dict)
    """Lines that were not socket entries, counted by ``SKIP_*`` reason."""
    filtered: int = 0
    """Valid entries left out because their state was not asked for."""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def decode_address(hex_text: str, byteorder: ByteOrder = "little") -> str | None:
    """The canonical text of a kernel-printed address, or None if it is not one.

    Accepts exactly 8 (IPv4) or 32 (IPv6) hex digits.
    """
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if len(raw) == 4 and len(hex_text) == 8:
        return packed_address(raw[::-1] if byteorder == "little" else raw)
    if len(raw) == 16 and len(hex_text) == 32:
        if byteorder == "little":
            # Four 32-bit words, each printed in host order.
            raw = raw[3::-1] + raw[7:3:-1] + raw[11:7:-1] + raw[15:11:-1]
        return packed_address(raw)
    return None


def _decode_port(hex_text: str) -> int | None:
    # bytes.fromhex is the strict check: int(x, 16) would also take "0x1F",
    # "+1F", "1_F" and non-ASCII digits.
    if len(hex_text) != 4:
        return None
    try:
        return int.from_bytes(bytes.fromhex(hex_text), "big")
    except ValueError:
        return None


def parse_tcp_table(
    data: str | bytes,
    *,
    states: Collection[int] | None = None,
    byteorder: ByteOrder = "little",
) -> TcpTable:
    """Parse the text of a ``tcp`` or ``tcp6`` table (or both concatenated).

    ``states`` keeps only entries in those states (the rest are counted in
    :attr:`TcpTable.filtered`, not as skipped); it is checked before any
    address is decoded, which is what makes it cheap on busy nodes full of
    TIME_WAIT entries.
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    wanted = None if states is None else frozenset(states)

    sockets: list[TcpSocket] = []
    skipped: dict[str, int] = {}
    filtered = 0
    # Per-call memo: bounded by the table's size, and gone when the call ends.
    # A bad value is stored as None and simply decoded again if seen again.
    ips: dict[str, str | None] = {}
    ports: dict[str, int | None] = {}
    state_by_hex = _STATE_BY_HEX
    append = sockets.append

    for line in text.splitlines():
        cols = line.split()
        if len(cols) < _MIN_COLUMNS:
            reason = SKIP_BLANK if not cols else SKIP_HEADER if cols[0] == "sl" else SKIP_SHORT
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        state = state_by_hex.get(cols[_COL_STATE])
        if state is None:
            reason = SKIP_HEADER if cols[0] == "sl" else SKIP_BAD_STATE
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        if wanted is not None and state not in wanted:
            filtered += 1
            continue

        local = cols[_COL_LOCAL]
        remote = cols[_COL_REMOTE]
        # Endpoints are "<hex>:<4 hex>"; slicing is cheaper than partition().
        local_hex = local[:-5]
        remote_hex = remote[:-5]
        local_ip = ips.get(local_hex)
        if local_ip is None:
            local_ip = ips[local_hex] = decode_address(local_hex, byteorder)
        remote_ip = ips.get(remote_hex)
        if remote_ip is None:
            remote_ip = ips[remote_hex] = decode_address(remote_hex, byteorder)
        if local_ip is None or remote_ip is None or len(local_hex) != len(remote_hex):
            skipped[SKIP_BAD_ADDRESS] = skipped.get(SKIP_BAD_ADDRESS, 0) + 1
            continue
        # Both tokens are now at least 13 characters long, so [-5] exists.
        local_port_hex = local[-4:]
        remote_port_hex = remote[-4:]
        local_port = ports.get(local_port_hex)
        if local_port is None:
            local_port = ports[local_port_hex] = _decode_port(local_port_hex)
        remote_port = ports.get(remote_port_hex)
        if remote_port is None:
            remote_port = ports[remote_port_hex] = _decode_port(remote_port_hex)
        if local_port is None or remote_port is None or local[-5] != ":" or remote[-5] != ":":
            skipped[SKIP_BAD_PORT] = skipped.get(SKIP_BAD_PORT, 0) + 1
            continue

        uid_text = cols[_COL_UID]
        inode_text = cols[_COL_INODE]
        # isascii() as well: isdigit() alone admits "²" and other Unicode digits.
        if not (
            uid_text.isascii()
            and uid_text.isdigit()
            and inode_text.isascii()
            and inode_text.isdigit()
        ):
            skipped[SKIP_BAD_NUMBER] = skipped.get(SKIP_BAD_NUMBER, 0) + 1
            continue

        append(
            TcpSocket(
                local_ip,
                local_port,
                remote_ip,
                remote_port,
                state,
                int(inode_text),
                int(uid_text),
                len(local_hex) == 32,
            )
        )
    return TcpTable(tuple(sockets), skipped, filtered)
