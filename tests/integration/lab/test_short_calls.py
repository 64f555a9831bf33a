"""Calls too short for any socket scan: the node's connection tracking maps them.

A lab of two nodes with a client, a Service with two workloads behind it and
a lone pod, and the real components (capture agents in the node namespaces,
the watcher, a stream worker). The client makes single calls of a few
milliseconds, by address, with no DNS answer to name them: one to the
Service's address (the node's nftables picks a backend at random) and one to
the lone pod's address. The scans run every 2 seconds, so only connection
tracking can see these calls.

Truth is what the servers said: each lab pod answers ``pong <ns>/<pod>``. The
map must hold the edge to the workload whose pod answered, and no edge to the
Service's other workload, which was never called.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from helpers.labfixtures import python_in, skip_without_root, write_topology

from callmap.broker import ensure_topics
from callmap.config import Settings
from lab.addressing import plan
from lab.edgereader import EdgeReader
from lab.pipeline import RunOptions, running_lab, start_components, start_streams
from lab.runtime import release
from lab.state import LabState
from lab.topology import load_topology

pytestmark = [pytest.mark.kafka, pytest.mark.netns, pytest.mark.e2e, pytest.mark.timeout(300)]

TOPOLOGY = """
name: short
nodes: [node-a, node-b]
workloads:
  - {namespace: shop, name: client, node: node-a}
  - {namespace: shop, name: reviews-v1, node: node-b, ports: [9080]}
  - {namespace: shop, name: reviews-v2, node: node-a, ports: [9080]}
  - {namespace: shop, name: solo, node: node-b, ports: [7000]}
services:
  - {namespace: shop, name: reviews, ports: [9080], selects: [reviews-v1, reviews-v2]}
calls: []
"""

ONE_CALL = """
import json, socket, time
started = time.monotonic()
with socket.create_connection(({ip!r}, {port}), timeout=2) as s:
    s.sendall(b"ping shop/client\\n")
    answer = s.makefile().readline().strip()
print(json.dumps({{"answer": answer, "seconds": time.monotonic() - started}}))
"""


def one_call(netns: str, ip: str, port: int) -> tuple[str, float]:
    """A single short call from ``netns``: the server's answer, and how long it took."""
    result = json.loads(python_in(netns, ONE_CALL.format(ip=ip, port=port)))
    return result["answer"], result["seconds"]


def test_short_calls_by_address_map_to_the_workload_that_answered(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_without_root()
    # The components' topics as the test broker's (one replica, few partitions).
    monkeypatch.setenv("CALLMAP_TOPIC_PARTITIONS", "3")
    monkeypatch.setenv("CALLMAP_TOPIC_REPLICATION", "1")
    topology = write_topology(tmp_path, "short", TOPOLOGY)
    (reviews,) = [s for s in plan(load_topology(topology)).services if s.name == "reviews"]
    service_ip = next(ip for ip in reviews.cluster_ips if ":" not in ip)
    with running_lab(topology, tmp_path / "state") as state:
        pods = {f"{p.namespace}/{p.name}": p for p in state.pods}
        (client,) = [p for p in pods.values() if p.workload == "shop/client"]
        (solo,) = [p for p in pods.values() if p.workload == "shop/solo"]
        solo_ip = next(ip for ip in solo.ips if ":" not in ip)
        calls = ((service_ip, 9080), (solo_ip, 7000))
        answers, seen = asyncio.run(_calls_and_map(settings, state, client.netns, calls))
    # The servers' own words: which pod answered each call, and so which workload.
    via_service, direct = (pods[a].workload for a in answers)
    assert direct == "shop/solo"
    assert via_service in {"shop/reviews-v1", "shop/reviews-v2"}
    never_called = ({"shop/reviews-v1", "shop/reviews-v2"} - {via_service}).pop()
    assert ("shop/client", via_service) in seen, seen
    assert ("shop/client", "shop/solo") in seen, seen
    assert ("shop/client", never_called) not in seen, seen


async def _calls_and_map(
    settings: Settings, state: LabState, client_netns: str, calls: tuple[tuple[str, int], ...]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Start the components, make the calls; the pods that answered, and the map once
    the client's edges are in it (or after 90 s)."""
    cluster = f"{state.cluster}-short"
    await ensure_topics(settings.kafka, settings.topics)
    async with EdgeReader(settings, cluster) as reader:
        components = start_components(state, settings, cluster, RunOptions(), print)
        try:
            await asyncio.sleep(3)  # capture open
            components.check()
            start_streams(components, app_id=f"callmap-lab-{cluster}")
            release(Path(state.state_dir))
            answers = []
            for ip, port in calls:
                answer, seconds = one_call(client_netns, ip, port)
                assert seconds < 0.5, seconds  # a short call: no scan every 2 s sees it
                answers.append(answer.removeprefix("pong "))
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and len(_client_edges(reader)) < len(calls):
                await reader.poll(2.0)
            await reader.poll(6.0)  # anything wrong would come with them
            components.check()
        finally:
            components.stop()
        return answers, _client_edges(reader)


def _client_edges(reader: EdgeReader) -> set[tuple[str, str]]:
    pairs = (reader.pair(edge_id) for edge_id in reader.seen)
    return {(p.client, p.server) for p in pairs if p.client == "shop/client"}
