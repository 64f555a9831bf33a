"""A conntrack event as capture reads it (:class:`FlowEvent`), and why a message is not one. Pure.

The definitions both ways of reading ``ctnetlink`` messages share: straight
from their bytes (:mod:`capture.ctfastpath`) and through pyroute2's parser
(:mod:`capture.ctnetlink`), which must give the same events.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

from callmap.wire.records import Transport

IPS_SEEN_REPLY = 0x2
"""The status bit of a flow whose other side answered (``nf_conntrack_common.h``)."""

DROP_OTHER_PROTOCOL = "other_protocol"
"""An event of a protocol other than TCP and UDP (ICMP, SCTP, ...): no edge carries it."""
# Bad input: logged once per reason.
DROP_TRUNCATED = "truncated"
DROP_UNDECODABLE = "undecodable"
DROP_NOT_CONNTRACK = "not_a_conntrack_event"
DROP_ODD_FAMILY = "odd_family"
DROP_MISSING_TUPLE = "missing_tuple"
DROP_MISSING_STATUS = "missing_status"
BAD_INPUT = frozenset(
    {
        DROP_TRUNCATED,
        DROP_UNDECODABLE,
        DROP_NOT_CONNTRACK,
        DROP_ODD_FAMILY,
        DROP_MISSING_TUPLE,
        DROP_MISSING_STATUS,
    }
)


EventKind = Literal["new", "update", "destroy"]

# TCP conntrack states (enum tcp_conntrack, include/uapi/linux/netfilter/nf_conntrack_tcp.h)
TCP_TIME_WAIT = 7
"""Both sides closed: the connection ended in order."""
TCP_CLOSE = 8
"""A reset ended the connection (or refused it)."""

Endpoints = tuple[str, int, str, int]
"""A direction of a flow: source address and port, destination address and port."""


TRANSPORTS: dict[int, Transport] = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}
"""The protocols that edges carry, by IP protocol number."""


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """One conntrack event of a TCP or UDP flow."""

    kind: EventKind
    ct_id: int | None
    """The kernel's id of the flow (``CTA_ID``); None if the event had none."""
    status: int
    """The flow's ``IPS_*`` status bits."""
    orig: Endpoints
    """The original direction, as the client sent it (destination before DNAT)."""
    reply: Endpoints
    """The reply direction, as the answering side sends it (source after DNAT)."""
    transport: Transport = "tcp"
    tcp_state: int | None = None
    """The TCP flow's conntrack state (``TCP_CONNTRACK_*``) when the event carries it."""
    bytes: tuple[int, int] | None = None
    """Bytes each way (original, reply) when the event carries the flow's counters: a
    DESTROY, when the node's conntrack counts bytes (``nf_conntrack_acct``)."""

    @property
    def answered(self) -> bool:
        return bool(self.status & IPS_SEEN_REPLY)

    @property
    def natted(self) -> bool:
        """NAT sent the client's packets to someone other than the address it dialled."""
        return self.orig[2:4] != self.reply[0:2]
