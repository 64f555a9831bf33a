"""Conntrack events as the kernel sends them, for the conntrack capture tests.

Real ``ctnetlink`` messages, encoded by pyroute2's own message class, with the
status bits a TCP connection through a DNAT rule showed on this machine: NEW
at the SYN, an UPDATE with SEEN_REPLY at the SYN-ACK, DESTROY at the end.
"""

from __future__ import annotations

import socket
from typing import Any

from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from callmap.counters import StageCounters
from callmap.wire import SocketObservation
from capture.ctflows import FlowTracker

CLIENT, SERVICE, BACKEND, OTHER_BACKEND = "10.1.0.10", "10.96.0.10", "10.2.0.20", "10.2.0.21"
NETNS = 4026531840

# Status bits (include/uapi/linux/netfilter/nf_conntrack_common.h) as the kernel
# reported them for a DNAT'd connection on this machine.
SEEN_REPLY, ASSURED, CONFIRMED, DST_NAT = 0x2, 0x4, 0x8, 0x20
NAT_DONE, DYING = 0x180, 0x200
SYN_SENT = CONFIRMED | DST_NAT | NAT_DONE  # 0x1a8, the NEW event
ANSWERED = SYN_SENT | SEEN_REPLY  # 0x1aa, the UPDATE at the SYN-ACK
ESTABLISHED = ANSWERED | ASSURED  # 0x1ae

CT_NEW, CT_DELETE = 0x100, 0x102  # subsystem 1 (ctnetlink) << 8 | message
NLM_F_CREATE_EXCL = 0x600

Endpoints = tuple[str, int, str, int]


def direction(src: str, sport: int, dst: str, dport: int, proto: int = 6) -> dict[str, Any]:
    v6 = ":" in src
    ip = [
        ["CTA_IP_V6_SRC" if v6 else "CTA_IP_V4_SRC", src],
        ["CTA_IP_V6_DST" if v6 else "CTA_IP_V4_DST", dst],
    ]
    ports = [["CTA_PROTO_SRC_PORT", sport], ["CTA_PROTO_DST_PORT", dport]] if proto != 1 else []
    return {
        "attrs": [
            ["CTA_TUPLE_IP", {"attrs": ip}],
            ["CTA_TUPLE_PROTO", {"attrs": [["CTA_PROTO_NUM", proto], *ports]}],
        ]
    }


def encode(
    attrs: list[list[Any]], *, msg_type: int, flags: int = 0, family: int = socket.AF_INET
) -> bytes:
    message = nfct_msg()
    message["header"]["type"] = msg_type
    message["header"]["flags"] = flags
    message["nfgen_family"] = family
    message["attrs"] = attrs
    message.encode()
    return bytes(message.data)


def event(
    kind: str,
    orig: Endpoints,
    reply: Endpoints | None = None,
    *,
    status: int = ANSWERED,
    ct_id: int = 1,
    proto: int = 6,
    tcp_state: int | None = None,
    counted: tuple[int, int] | None = None,
) -> bytes:
    """One conntrack event as the kernel sends it; ``reply`` defaults to no NAT.

    ``tcp_state`` adds the CTA_PROTOINFO the kernel puts in a TCP flow's events,
    ``counted`` the bytes each way of a DESTROY on a node with accounting on."""
    if reply is None:
        reply = (orig[2], orig[3], orig[0], orig[1])
    msg_type, flags = {
        "new": (CT_NEW, NLM_F_CREATE_EXCL),
        "update": (CT_NEW, 0),
        "destroy": (CT_DELETE, 0),
    }[kind]
    family = socket.AF_INET6 if ":" in orig[0] else socket.AF_INET
    attrs: list[list[Any]] = [
        ["CTA_TUPLE_ORIG", direction(*orig, proto=proto)],
        ["CTA_TUPLE_REPLY", direction(*reply, proto=proto)],
        ["CTA_ID", ct_id],
        ["CTA_STATUS", status],
    ]
    if counted is not None:
        for name, count in zip(("CTA_COUNTERS_ORIG", "CTA_COUNTERS_REPLY"), counted, strict=True):
            attrs.append(
                [name, {"attrs": [["CTA_COUNTERS_PACKETS", 1], ["CTA_COUNTERS_BYTES", count]]}]
            )
    if tcp_state is not None:
        tcp = {"attrs": [["CTA_PROTOINFO_TCP_STATE", tcp_state]]}
        attrs.append(["CTA_PROTOINFO", {"attrs": [["CTA_PROTOINFO_TCP", tcp]]}])
    return encode(attrs, msg_type=msg_type, flags=flags, family=family)


VIA_SERVICE: Endpoints = (CLIENT, 40001, SERVICE, 80)
FROM_BACKEND: Endpoints = (BACKEND, 8080, CLIENT, 40001)


def connection(
    orig: Endpoints = VIA_SERVICE, reply: Endpoints = FROM_BACKEND, ct_id: int = 1
) -> list[bytes]:
    """A whole answered connection: SYN, SYN-ACK, established (its DESTROY comes later)."""
    return [
        event("new", orig, reply, status=SYN_SENT, ct_id=ct_id),
        event("update", orig, reply, status=ANSWERED, ct_id=ct_id),
        event("update", orig, reply, status=ESTABLISHED, ct_id=ct_id),
    ]


def tracker(*, udp: bool = False, **limits: int) -> tuple[FlowTracker, StageCounters]:
    stage = StageCounters()
    t = FlowTracker(cluster="c", node="node-a", netns=NETNS, counters=stage, udp=udp, **limits)
    return t, stage


def feed(t: FlowTracker, datagrams: list[bytes], now: float = 100.0) -> None:
    for data in datagrams:
        t.add_datagram(data, now)


def balanced(stage: StageCounters) -> bool:
    """Every event (and every loss) ends in exactly one outcome."""
    return stage.seen == stage.emitted + sum(stage.dropped.values())


def socket_seen(
    remote: tuple[str, int] = (SERVICE, 80), role: str = "client", origin: str = "proc"
) -> SocketObservation:
    return SocketObservation(
        cluster="c",
        node="node-a",
        ts=50.0,
        netns=777,
        pod_uid="pod-1",
        local_ip=CLIENT,
        local_port=40001,
        remote_ip=remote[0],
        remote_port=remote[1],
        role=role,  # type: ignore[arg-type]
        first_seen=40.0,
        origin=origin,
    )
