"""Decide, for the sockets of one network namespace, which side of each
connection this namespace is on.

Pure: sockets in (from :mod:`capture.procnet` or :mod:`capture.inetdiag`),
connections out. It promises:

- Only ESTABLISHED connections come out; every other state is counted under
  :data:`DROP_NOT_ESTABLISHED` (LISTEN sockets are used, then counted there too).
- Loopback is left out (:data:`DROP_LOOPBACK`): a connection with either end in
  ``127.0.0.0/8`` or ``::1`` never leaves the namespace, so it is no edge
  between workloads.
- The role is ``"server"`` when the connection's local port is listening in the
  namespace on its local address or on a wildcard, ``"client"`` otherwise. A
  v6 wildcard listener (``::``) also covers IPv4 connections, because Linux
  sockets are dual-stack unless ``IPV6_V6ONLY`` is set, and /proc does not show
  that flag. A v4 wildcard (``0.0.0.0``) covers only IPv4.

The input must be the sockets of ONE namespace: a listener in another
namespace says nothing about this one's connections.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import msgspec

from capture.procnet import TcpState

__all__ = [
    "DROP_LOOPBACK",
    "DROP_NOT_ESTABLISHED",
    "ROLE_CLIENT",
    "ROLE_SERVER",
    "Classified",
    "Connection",
    "Role",
    "TableSocket",
    "classify",
    "is_loopback",
    "listening_endpoints",
]

Role = Literal["server", "client"]
ROLE_SERVER: Final[Role] = "server"
ROLE_CLIENT: Final[Role] = "client"

# Drop reasons: the keys of Classified.dropped.
DROP_NOT_ESTABLISHED = "not_established"
"""The socket is not an ESTABLISHED connection (LISTEN, TIME_WAIT, ...)."""
DROP_LOOPBACK = "loopback"
"""Either end of the connection is a loopback address."""

_V4_WILDCARD = "0.0.0.0"
_V6_WILDCARD = "::"
_ESTABLISHED = TcpState.ESTABLISHED
_LISTEN = TcpState.LISTEN


class TableSocket(Protocol):
    """What classifying needs of a socket: a /proc line
    (:class:`capture.procnet.TcpSocket`) or a sock_diag message
    (:class:`capture.inetdiag.DiagSocket`) alike."""

    @property
    def state(self) -> TcpState: ...
    @property
    def local_ip(self) -> str: ...
    @property
    def local_port(self) -> int: ...
    @property
    def remote_ip(self) -> str: ...
    @property
    def remote_port(self) -> int: ...
    @property
    def inode(self) -> int: ...
    @property
    def uid(self) -> int: ...


class Connection(msgspec.Struct, frozen=True, gc=False):
    """An ESTABLISHED connection seen from one namespace, with that side's role.

    A frozen msgspec Struct rather than a frozen dataclass: a scan makes one per
    connection of the node, and it is built several times faster."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    role: Role
    inode: int
    uid: int


@dataclass(frozen=True, slots=True)
class Classified:
    """The connections of one namespace, and what was left out."""

    connections: tuple[Connection, ...]
    listeners: frozenset[tuple[str, int]]
    """Every listening (ip, port), wildcards as ``0.0.0.0`` / ``::``."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Sockets that are not reported, by ``DROP_*`` reason."""


def is_loopback(ip: str) -> bool:
    """True for ``127.0.0.0/8`` and ``::1`` in canonical text (as procnet gives)."""
    # procnet reports IPv4-mapped loopback as 127.x, so two checks suffice.
    return ip.startswith("127.") or ip == "::1"


def listening_endpoints(sockets: Iterable[TableSocket]) -> frozenset[tuple[str, int]]:
    """The (ip, port) pairs in LISTEN state."""
    return frozenset((s.local_ip, s.local_port) for s in sockets if s.state == _LISTEN)


def classify(sockets: Iterable[TableSocket], *, include_loopback: bool = False) -> Classified:
    """Give each ESTABLISHED, non-loopback connection of one namespace its role.

    ``include_loopback`` keeps loopback connections (they are dropped by
    default); it exists for looking at a single host's own traffic, such as a
    test on ``127.0.0.1``.

    A scan runs this over every socket of the node, so the loop is spelled for
    speed: the listeners are looked up by port first (most connections are a
    client's, on a port nothing listens on), and a loopback check is made once
    per distinct address (a namespace's sockets share a few).
    """
    table = sockets if isinstance(sockets, (list, tuple)) else list(sockets)
    listeners = listening_endpoints(table)
    listening: dict[int, set[str]] = {}  # port -> the addresses listening on it
    for ip, port in listeners:
        listening.setdefault(port, set()).add(ip)
    loopbacks: dict[str, bool] = {}  # address -> whether it is a loopback one
    connections: list[Connection] = []
    add = connections.append
    not_established = 0
    loopback = 0
    for s in table:
        if s.state != _ESTABLISHED:
            not_established += 1
            continue
        local_ip = s.local_ip
        remote_ip = s.remote_ip
        if not include_loopback:
            local_lo = loopbacks.get(local_ip)
            if local_lo is None:
                local_lo = loopbacks[local_ip] = is_loopback(local_ip)
            remote_lo = loopbacks.get(remote_ip)
            if remote_lo is None:
                remote_lo = loopbacks[remote_ip] = is_loopback(remote_ip)
            if local_lo or remote_lo:
                loopback += 1
                continue
        port = s.local_port
        ips = listening.get(port)
        # A ":" marks IPv6 text; a v4 wildcard cannot accept a v6 connection.
        serving = ips is not None and (
            local_ip in ips or _V6_WILDCARD in ips or (_V4_WILDCARD in ips and ":" not in local_ip)
        )
        add(
            Connection(
                local_ip,
                port,
                remote_ip,
                s.remote_port,
                ROLE_SERVER if serving else ROLE_CLIENT,
                s.inode,
                s.uid,
            )
        )
    dropped: dict[str, int] = {}
    if not_established:
        dropped[DROP_NOT_ESTABLISHED] = not_established
    if loopback:
        dropped[DROP_LOOPBACK] = loopback
    return Classified(tuple(connections), listeners, dropped)
