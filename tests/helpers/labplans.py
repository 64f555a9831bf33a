"""Helpers of the lab's unit tests: topologies from short YAML, and the bundled ones."""

from __future__ import annotations

from pathlib import Path

from lab.addressing import Plan, plan
from lab.multitopology import is_multi, read_document
from lab.topology import load_topology, parse_topology

TOPOLOGY_DIR = Path(__file__).parents[2] / "lab" / "topologies"
SINGLE_CLUSTER = sorted(
    path.stem for path in TOPOLOGY_DIR.glob("*.yaml") if not is_multi(read_document(path))
)
"""The bundled single-cluster topologies (``clusters.yaml`` is several clusters)."""
ON_CLUSTER = [
    name
    for name in SINGLE_CLUSTER
    if all(call.protocol == "tcp" for call in load_topology(TOPOLOGY_DIR / f"{name}.yaml").calls)
]
"""Those the cluster lab takes: UDP calls are the netns lab's only (``udp.yaml``)."""


def plan_of(text: str) -> Plan:
    return plan(parse_topology(text))


def bundled(name: str) -> Plan:
    return plan(load_topology(TOPOLOGY_DIR / f"{name}.yaml"))
