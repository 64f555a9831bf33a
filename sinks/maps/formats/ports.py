"""An edge's server ports as text, the one way every text output writes them.

TCP ports are bare numbers, as they always were; UDP ports follow them as
``53/udp``, so a TCP-only edge reads exactly as before and a UDP port is never
mistaken for a TCP one. Pure.
"""

from __future__ import annotations

from callmap.wire import Edge


def port_labels(edge: Edge) -> list[str]:
    """``edge``'s TCP ports, then its UDP ports as ``N/udp``, each in the edge's order."""
    return [str(port) for port in edge.ports] + [f"{port}/udp" for port in edge.udp_ports]


def has_ports(edge: Edge) -> bool:
    """Whether ``edge`` was seen on any port, TCP or UDP."""
    return bool(edge.ports or edge.udp_ports)
