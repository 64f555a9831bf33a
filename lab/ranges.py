"""The address ranges the lab owns; nothing outside its namespaces uses them.

Pods get ``10.244.<node>.<n>`` and ``fd00:244::<node>:<n>``, services
``10.96.x.y`` and ``fd00:96::<n>``, nodes ``172.31.250.<10+i>`` and
``fd00:250::<10+i>``. External addresses from a topology must lie outside all
of them; they live only in the lab's isolated "internet" namespace.

A multi-cluster lab gives each cluster a range *slot*: slot ``s`` shifts the
pod and service ranges to ``10.<244+s>/16`` and ``10.<96+s>/16`` (IPv6:
``fd00:244:0:<s>::/64`` and ``fd00:96:0:<s>::/108``). Clusters that overlap
share a slot; slot 0 is the single-cluster lab's. Node ranges are the same in
every cluster: each cluster has its own fabric and nodes are never routed
between clusters.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

POD_V4 = ipaddress.IPv4Network("10.244.0.0/16")
POD_V6 = ipaddress.IPv6Network("fd00:244::/64")
SERVICE_V4 = ipaddress.IPv4Network("10.96.0.0/16")
SERVICE_V6 = ipaddress.IPv6Network("fd00:96::/108")
NODE_V4 = ipaddress.ip_network("172.31.250.0/24")
NODE_V6 = ipaddress.ip_network("fd00:250::/64")
GATEWAY_V4 = "169.254.1.1"
"""A node's end of every pod's veth: the pods' default gateway."""
GATEWAY_V6 = "fe80::1"
FABRIC_V4 = str(NODE_V4.network_address + 1)
"""The fabric's end of the node and internet links: their default gateway, and
the source of its ICMP errors (a node must not own it, or it drops them)."""
FABRIC_V6 = str(NODE_V6.network_address + 1)
MAX_SLOT = 10
"""The highest range slot: pods up to 10.254/16, services up to 10.106/16."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Ranges:
    """One cluster's pod and service ranges (see the module docstring)."""

    slot: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.slot <= MAX_SLOT:
            raise ValueError(f"range slot {self.slot} is not in 0..{MAX_SLOT}")

    @property
    def pod_v4(self) -> ipaddress.IPv4Network:
        return _shifted_v4(POD_V4, self.slot)

    @property
    def service_v4(self) -> ipaddress.IPv4Network:
        return _shifted_v4(SERVICE_V4, self.slot)

    @property
    def pod_v6(self) -> ipaddress.IPv6Network:
        return _shifted_v6(POD_V6, self.slot)

    @property
    def service_v6(self) -> ipaddress.IPv6Network:
        return _shifted_v6(SERVICE_V6, self.slot)

    @property
    def routed(self) -> tuple[Network, ...]:
        """What another cluster's fabric routes to this one when they are peers."""
        return (self.pod_v4, self.service_v4, self.pod_v6, self.service_v6)

    @property
    def owned(self) -> tuple[Network, ...]:
        """Every address of the cluster: pods, services and nodes."""
        return (*self.routed, NODE_V4, NODE_V6)


def _shifted_v4(network: ipaddress.IPv4Network, slot: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((int(network.network_address) + (slot << 16), network.prefixlen))


def _shifted_v6(network: ipaddress.IPv6Network, slot: int) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((int(network.network_address) + (slot << 64), network.prefixlen))


CLUSTER_RANGES = Ranges().owned
