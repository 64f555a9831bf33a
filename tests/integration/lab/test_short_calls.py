"""Calls too short for any socket scan: the node's connection tracking maps them,
and counts how they went.

A lab of two nodes with a client, a Service with two workloads behind it and
a lone pod, and the real components (capture agents in the node namespaces,
the watcher, a stream worker). The client makes single calls of a few
milliseconds, by address, with no DNS answer to name them: one to the
Service's address (the node's nftables picks a backend at random) and one to
the lone pod's address. The scans run every 2 seconds, so only connection
tracking can see these calls.

Truth is what the servers said: each lab pod answers ``pong <ns>/<pod>``. The
map must hold the edge to the workload whose pod answered, and no edge to the
Service's other workload, which was never called. An edge's health is held to
the client's own outcomes: how many connects each workload answered, how many
the client ended with a reset, how many were refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.labfixtures import python_in, skip_without_root, write_topology

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.readiness import CAPTURE_RUNNING
from callmap.wire import Edge, FlowHealth
from lab.addressing import plan
from lab.edgereader import EdgeReader
from lab.lifecycle import EDGE_REFRESH
from lab.pipeline import (
    RunOptions,
    running_lab,
    start_components,
    start_streams,
)
from lab.runtime import release
from lab.state import LabState, PodState
from lab.topology import load_topology
from lab.truth import ExpectedEdge

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


MANY_CALLS = """
import json, socket, struct

def call(ip, port, reset):
    try:
        conn = socket.create_connection((ip, port), timeout=2)
    except ConnectionRefusedError:
        return "refused"
    with conn:
        conn.sendall(b"ping shop/client\\n")
        answer = conn.makefile().readline().strip()
        if reset:  # end it with a reset: SO_LINGER on, timeout 0
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return "reset " + answer if reset else answer

print(json.dumps([call(ip, port, reset) for ip, port, reset in {calls!r}]))
"""


def one_call(netns: str, ip: str, port: int) -> tuple[str, float]:
    """A single short call from ``netns``: the server's answer, and how long it took."""
    result = json.loads(python_in(netns, ONE_CALL.format(ip=ip, port=port)))
    return result["answer"], result["seconds"]


@dataclass(frozen=True)
class ShortLab:
    state: LabState
    pods: dict[str, PodState]
    """By ``namespace/name``: what a server's answer names."""
    client: PodState
    service_ip: str
    """The reviews Service's IPv4 address: two workloads behind it."""
    solo_ip: str
    """The lone pod's IPv4 address."""


@contextlib.contextmanager
def short_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShortLab]:
    """The lab of :data:`TOPOLOGY`, up for the test."""
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
        yield ShortLab(state, pods, client, service_ip, solo_ip)


@contextlib.asynccontextmanager
async def mapping(settings: Settings, lab: ShortLab, name: str) -> AsyncIterator[EdgeReader]:
    """The lab's components (capture open, the stream worker refreshing edges every
    :data:`EDGE_REFRESH` s, the pods released) and a reader of the map they draw."""
    cluster = f"{lab.state.cluster}-{name}"
    await ensure_topics(settings.kafka, settings.topics)
    async with EdgeReader(settings, cluster) as reader:
        components = start_components(lab.state, settings, cluster, RunOptions(), print)
        try:
            # Capture follows connection tracking once it runs: a call before would be lost.
            await components.logged("capture-", CAPTURE_RUNNING)
            start_streams(components, f"callmap-lab-{cluster}", EDGE_REFRESH)
            release(Path(lab.state.state_dir))
            yield reader
            components.check()
        finally:
            components.stop()


def test_short_calls_by_address_map_to_the_workload_that_answered(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with short_lab(tmp_path, monkeypatch) as lab:
        calls = ((lab.service_ip, 9080), (lab.solo_ip, 7000))
        answers, seen = asyncio.run(_calls_and_map(settings, lab, calls))
    # The servers' own words: which pod answered each call, and so which workload.
    via_service, direct = (lab.pods[a].workload for a in answers)
    assert direct == "shop/solo"
    assert via_service in {"shop/reviews-v1", "shop/reviews-v2"}
    never_called = ({"shop/reviews-v1", "shop/reviews-v2"} - {via_service}).pop()
    assert ("shop/client", via_service) in seen, seen
    assert ("shop/client", "shop/solo") in seen, seen
    assert ("shop/client", never_called) not in seen, seen


async def _calls_and_map(
    settings: Settings, lab: ShortLab, calls: tuple[tuple[str, int], ...]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Make the calls; the pods that answered, and the map once the client's edges are
    in it (or after 90 s)."""
    async with mapping(settings, lab, "short") as reader:
        answers = []
        for ip, port in calls:
            answer, seconds = one_call(lab.client.netns, ip, port)
            assert seconds < 0.5, seconds  # a short call: no scan every 2 s sees it
            answers.append(answer.removeprefix("pong "))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(_client_edges(reader)) < len(calls):
            await reader.poll(2.0)
        await reader.poll(6.0)  # anything wrong would come with them
    return answers, _client_edges(reader)


Counts = tuple[int, int, int, int]
"""``(opened, closed, resets, failed)``: what the test can know of a health."""


def test_each_edge_counts_the_connections_its_client_opened_reset_and_failed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls through the Service (each answered by one backend), calls to the lone pod
    closed in order or by the client's reset, and connects to a port where nothing
    listens: each edge's ``health_total`` counts exactly what its client saw, once,
    though the lone pod's node tracks the same flows."""
    with short_lab(tmp_path, monkeypatch) as lab:
        first = [(lab.solo_ip, 7000, False)] * 6 + [(lab.service_ip, 9080, False)] * 24
        then = [(lab.solo_ip, 7000, True)] * 4 + [(lab.solo_ip, 7001, False)] * 5
        outcomes, told = asyncio.run(_counted_calls(settings, lab, first, then))
    # The client's own outcomes, each answer naming the pod and so the workload.
    expected: dict[str, list[int]] = {}
    for outcome in outcomes:
        if outcome == "refused":
            expected.setdefault("shop/solo", [0, 0, 0, 0])[3] += 1
            continue
        reset = outcome.startswith("reset ")
        pod = outcome.removeprefix("reset ").removeprefix("pong ")
        counts = expected.setdefault(lab.pods[pod].workload, [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += 1
        counts[2] += reset
    assert expected["shop/solo"] == [10, 10, 4, 5], outcomes
    assert told == {server: tuple(counts) for server, counts in expected.items()}


async def _counted_calls(
    settings: Settings,
    lab: ShortLab,
    first: list[tuple[str, int, bool]],
    then: list[tuple[str, int, bool]],
) -> tuple[list[str], dict[str, Counts]]:
    """Make the ``first`` calls and, once their edges are in the map, the ``then`` calls
    (a failed connect counts on an edge that exists). The client's outcomes, and the
    health totals of its edges once they add up to as many calls as the client made
    (or after 150 s: a refused connect is told when conntrack's 10 s for it end and
    the kernel's sweep finds it), read again 8 s later."""
    async with mapping(settings, lab, "health") as reader:
        outcomes = _calls(lab.client.netns, first)
        servers = {o.removeprefix("pong ") for o in outcomes}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(_client_edges(reader)) < len(servers):
            await reader.poll(2.0)
        outcomes += _calls(lab.client.netns, then)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and _calls_told(reader) < len(outcomes):
            await reader.poll(2.0)
        await reader.poll(8.0)  # a count told twice would come within a refresh or two
    return outcomes, _health_totals(reader)


def _calls(netns: str, calls: list[tuple[str, int, bool]]) -> list[str]:
    """Make ``calls`` from ``netns``, one after another: each one's outcome as the client
    saw it (the server's answer, ``reset <answer>``, or ``refused``)."""
    return list(json.loads(python_in(netns, MANY_CALLS.format(calls=calls))))


def _health_totals(reader: EdgeReader) -> dict[str, Counts]:
    """The client's edges' counts since they were new, by server."""
    totals = {}
    for pair, edge in _client_pairs(reader):
        health = edge.health_total or FlowHealth()
        totals[pair.server] = (health.opened, health.closed, health.resets, health.failed)
    return totals


def _calls_told(reader: EdgeReader) -> int:
    """How many calls the client's edges account for: each answered connect is opened
    (and closed, once it ended), each refused one failed."""
    totals = _health_totals(reader).values()
    return sum(min(opened, closed) + failed for opened, closed, _, failed in totals)


def _client_edges(reader: EdgeReader) -> set[tuple[str, str]]:
    return {(pair.client, pair.server) for pair, _ in _client_pairs(reader)}


def _client_pairs(reader: EdgeReader) -> Iterator[tuple[ExpectedEdge, Edge]]:
    """The client's edges read so far, with their (client, server) names."""
    for edge_id, edge in reader.seen.items():
        pair = reader.pair(edge_id)
        if pair.client == "shop/client":
            yield pair, edge
