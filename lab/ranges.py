"""The address ranges the lab owns; nothing outside its namespaces uses them.

Pods get ``10.244.<node>.<n>`` and ``fd00:244::<node>:<n>``, services
``10.96.x.y`` and ``fd00:96::<n>``, nodes ``172.31.250.<10+i>`` and
``fd00:250::<10+i>``. External addresses from a topology must lie outside all
of them; they live only in the lab's isolated "internet" namespace.
"""

from __future__ import annotations

import ipaddress

POD_V4 = ipaddress.ip_network("10.244.0.0/16")
POD_V6 = ipaddress.ip_network("fd00:244::/64")
SERVICE_V4 = ipaddress.ip_network("10.96.0.0/16")
SERVICE_V6 = ipaddress.ip_network("fd00:96::/108")
NODE_V4 = ipaddress.ip_network("172.31.250.0/24")
NODE_V6 = ipaddress.ip_network("fd00:250::/64")
GATEWAY_V4 = "169.254.1.1"
"""A node's end of every pod's veth: the pods' default gateway."""
GATEWAY_V6 = "fe80::1"
FABRIC_V4 = str(NODE_V4.network_address + 1)
"""The fabric's end of the node and internet links: their default gateway, and
the source of its ICMP errors (a node must not own it, or it drops them)."""
FABRIC_V6 = str(NODE_V6.network_address + 1)

CLUSTER_RANGES = (POD_V4, POD_V6, SERVICE_V4, SERVICE_V6, NODE_V4, NODE_V6)
