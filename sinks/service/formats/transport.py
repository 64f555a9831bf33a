"""Which transport protocol a SIEM record of an edge names, and its port.

A feed's record describes one connection, but an edge folds every call of a
client to a server, which may be TCP, UDP or both. One record per edge event
stays (SIEMs deduplicate replays by its key), so it names one protocol: UDP
when the edge was seen on UDP ports only, else TCP (also for an edge seen
without ports, by DNS only, as before UDP was captured). Every port of both
protocols stays in the record's own fields. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from callmap.wire import Edge


@dataclass(frozen=True, slots=True)
class Transport:
    name: str
    """``tcp`` or ``udp``, lower case as ECS and OCSF write it (CEF upper-cases it)."""
    number: int
    """The IANA protocol number: 6 or 17."""
    port: int | None
    """The first server port of that protocol, None when there is none."""


def transport(edge: Edge) -> Transport:
    """The protocol a record of ``edge`` names: UDP for a UDP-only edge, else TCP."""
    if edge.udp_ports and not edge.ports:
        return Transport("udp", 17, edge.udp_ports[0])
    return Transport("tcp", 6, edge.ports[0] if edge.ports else None)
