"""A multi-cluster lab's network: one single-cluster lab per cluster, peers' fabrics linked.

Each cluster of a multi-cluster topology (:mod:`lab.multitopology`) is built
by :func:`lab.runtime.up` as a lab of its own (``<name>-<cluster>``: its own
fabric, nodes, pods, DNS server and internet, in its range slot). Peered
clusters' fabrics are then joined by a veth, and each routes the other's pod
and service ranges over it, the way a flat multi-cluster network (Cilium
ClusterMesh, a routed underlay) lets pods reach each other's pod IPs::

    east fabric (lo: 172.31.249.1) ==x1/x0== west fabric (lo: 172.31.249.2)
    east: 10.245.0.0/16, 10.97.0.0/16 via 172.31.249.2 dev x1 onlink

Overlapping clusters have the same ranges and are never linked. A peer's
service IP reaches its fabric, which refuses it (a ClusterIP is translated
only by its own cluster's nodes); clusterset names are translated by the
calling cluster's nodes (:func:`lab.netbuild.nft_ruleset`).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.addressing import Plan
from lab.multitopology import MultiTopology, load_multi
from lab.netbuild import Command, run_commands
from lab.ranges import Ranges
from lab.runtime import up
from lab.state import LabState
from lab.teardown import down

PEER_V4 = ipaddress.ip_network("172.31.249.0/24")
"""Each fabric's address on its peer links: ``172.31.249.<1 + cluster index>``."""


def fabric_address(index: int) -> str:
    return str(PEER_V4.network_address + 1 + index)


def peering_commands(multi: MultiTopology, plans: Mapping[str, Plan]) -> list[Command]:
    """Link every pair of peered clusters' fabrics and route their ranges (IPv4)."""
    index = {spec.name: i for i, spec in enumerate(multi.clusters)}
    commands: list[Command] = []
    for spec in multi.clusters:
        if spec.peers:
            fabric = plans[spec.name].fabric_netns
            address = f"{fabric_address(index[spec.name])}/32"
            commands.append(("ip", "-n", fabric, "addr", "add", address, "dev", "lo"))
    for spec in multi.clusters:
        for peer in sorted(spec.peers):
            if index[peer] < index[spec.name]:
                continue  # each pair once
            mine, theirs = plans[spec.name].fabric_netns, plans[peer].fabric_netns
            my_if, their_if = f"x{index[peer]}", f"x{index[spec.name]}"
            commands += [
                ("ip", "link", "add", my_if, "netns", mine, "type", "veth",
                 "peer", "name", their_if, "netns", theirs),
                ("ip", "-n", mine, "link", "set", my_if, "up"),
                ("ip", "-n", theirs, "link", "set", their_if, "up"),
            ]  # fmt: skip
            pairs = (
                (mine, my_if, peer, index[peer]),
                (theirs, their_if, spec.name, index[spec.name]),
            )
            for fabric, link, other, other_index in pairs:
                ranges = Ranges(plans[other].ranges.slot)
                for network in (ranges.pod_v4, ranges.service_v4):
                    commands.append(
                        ("ip", "-n", fabric, "route", "add", str(network),
                         "via", fabric_address(other_index), "dev", link, "onlink")
                    )  # fmt: skip
    return commands


def up_clusters(path: Path, multi: MultiTopology, hold: bool = True) -> dict[str, LabState]:
    """Build every cluster's lab (in parallel) and peer them; on failure remove them all."""
    states: dict[str, LabState] = {}
    try:
        with ThreadPoolExecutor(len(multi.clusters), thread_name_prefix="lab-up") as pool:
            futures = {
                spec.name: pool.submit(up, path, None, hold, member=spec.name)
                for spec in multi.clusters
            }
            failures = []
            for name, future in futures.items():
                try:
                    states[name] = future.result()
                except BaseException as exc:
                    failures.append(exc)
            if failures:
                raise failures[0]
        run_commands(peering_commands(multi, multi.plans()))
    except BaseException:
        down_clusters(multi)
        raise
    return states


def down_clusters(multi: MultiTopology) -> None:
    """Remove every cluster's lab (their peer links go with their fabrics)."""
    for topology in multi.members.values():
        down(topology.name)


@contextlib.contextmanager
def running_clusters(path: Path, hold: bool = True) -> Iterator[dict[str, LabState]]:
    multi = load_multi(path)
    states = up_clusters(path, multi, hold)
    try:
        yield states
    finally:
        down_clusters(multi)
