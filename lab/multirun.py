"""``lab run`` on a multi-cluster topology: every cluster's pipeline, a hub, the global map.

For each cluster (:mod:`lab.multilab` builds their networks, peered as
declared) the run starts a Kafka broker of the cluster's own and the same
components a single-cluster run starts (capture on every node, the watcher,
a stream worker), each stamping the cluster's name. A hub broker receives
every cluster's shared topics through real MirrorMaker 2 (one instance per
cluster, exactly-once, ``<cluster>.callmap.edges.v1`` and so on), and
``callmap aggregate`` at the hub, given the topology itself as its
clusterset, publishes ``callmap.global-edges.v1``. That topic, read by one
consumer from where it ended when the run began, is the map compared with
both global truths (:mod:`lab.multitruth`).

``stop_mirror`` entries stop a cluster's MirrorMaker (SIGTERM) at their time
after the calls were released and start it again after their duration,
while everything else runs on: the hub then hears nothing from that
cluster. The aggregator's TTL (:func:`aggregate_ttl`) and grace
(:func:`aggregate_grace`) cover the longest stop, as an operator sets them
to cover the mirror outages they accept; the
report's ``new_again`` shows whether the return announced anything twice.

Every broker is new for the run (its own directory under the callmap cache,
``lab-runs/<name>/``, kept for a post-mortem with every component's log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callmap.broker import ensure_topics
from callmap.config import Settings, load_settings
from callmap.paths import cache_dir
from callmap.readiness import CAPTURE_RUNNING
from callmap.wire import ALL_TOPICS, GLOBAL_EDGES
from callmap.wire.topics import HUB_TOPICS
from devtools.kafka import DevBroker
from devtools.mirror import DevMirror
from devtools.process import free_port
from lab.addressing import Plan
from lab.churn import run_churn
from lab.clusterrecord import read_call_logs
from lab.compare import Comparison, compare, compare_with_truth
from lab.edgereader import EdgeReader
from lab.lifecycle import LAB_REFRESH, LAB_TTL, check_lifecycle, expiry_due
from lab.multilab import running_clusters
from lab.multitopology import MirrorStop, MultiTopology, load_multi
from lab.multitruth import GlobalCalls, global_calls, global_truth
from lab.pipeline import (
    Components,
    LabRun,
    RunOptions,
    start_components,
    start_streams,
)
from lab.runtime import pod_life, release
from lab.state import LabState, load_state
from lab.truth import Truth

Progress = Callable[[str], None]
HUB = "hub"
"""The hub's alias: MirrorMaker's target cluster."""


STREAMS_REFRESH = 20.0
"""The clusters' stream workers re-announce a live edge this often (``--refresh-interval``)."""


def aggregate_ttl(multi: MultiTopology) -> float:
    """The aggregator's TTL: how often a cluster re-announces a live edge, plus its TTL,
    plus the longest mirror stop (a stopped mirror must not expire its cluster's edges),
    plus two capture refreshes."""
    longest = max((stop.seconds for stop in multi.stop_mirror), default=0.0)
    return STREAMS_REFRESH + LAB_TTL + longest + 2 * LAB_REFRESH


AGGREGATE_GRACE = 60.0
"""The aggregator's default ``--grace``: how long a new edge waits for its names."""


def aggregate_grace(multi: MultiTopology) -> float:
    """The aggregator's grace: the default plus the longest mirror stop. A cluster's
    identities may reach the hub only when its stopped mirror runs again; an edge into
    that cluster seen meanwhile must wait for them, not reach the map as a raw ``ip``."""
    longest = max((stop.seconds for stop in multi.stop_mirror), default=0.0)
    return AGGREGATE_GRACE + longest


@dataclass(frozen=True, slots=True)
class MultiLabRun:
    """A multi-cluster run: the global map against both global truths, and what was done."""

    run: LabRun
    """The comparisons, lifecycle and ``new_again``, as a single-cluster run reports them
    (``cluster`` is the topology's name)."""
    clusters: tuple[str, ...]
    mirror_stops: tuple[str, ...] = ()
    """What the run did to the mirrors, as it happened."""

    @property
    def perfect(self) -> bool:
        return self.run.perfect

    def as_json(self) -> dict[str, Any]:
        return {
            **self.run.as_json(),
            "clusters": list(self.clusters),
            "mirror_stops": list(self.mirror_stops),
        }

    def as_text(self) -> str:
        stops = "".join(f"\n{line}" for line in self.mirror_stops)
        return (
            f"clusters {', '.join(self.clusters)}, mapped at the hub{stops}\n{self.run.as_text()}"
        )


def run_multi(topology: Path, options: RunOptions, progress: Progress = print) -> MultiLabRun:
    """Run every cluster's pipeline, the mirrors and the aggregator; the global map."""
    multi = load_multi(topology)
    plans = multi.plans()
    truth = global_truth(multi, plans)  # a call that reaches nothing fails before anything runs
    root = cache_dir() / "lab-runs" / multi.name
    names = [spec.name for spec in multi.clusters]
    with _brokers(root, [*names, HUB], progress) as settings:
        for name in names:
            asyncio.run(ensure_topics(settings[name].kafka, settings[name].topics, ALL_TOPICS))
        asyncio.run(ensure_topics(settings[HUB].kafka, settings[HUB].topics, HUB_TOPICS))
        with running_clusters(topology.resolve(), hold=True) as states:
            progress(f"clusters {', '.join(names)} up, peered as declared")
            run = _Run(topology.resolve(), multi, plans, truth, settings, states, root, options)
            return asyncio.run(run.map(progress))


@contextlib.contextmanager
def _brokers(root: Path, aliases: list[str], progress: Progress) -> Iterator[dict[str, Settings]]:
    """A new broker per alias, started in parallel; stopped (and kept on disk) at the end."""
    brokers = {alias: DevBroker(root / "kafka" / alias, free_port()) for alias in aliases}
    for broker in brokers.values():
        shutil.rmtree(broker.directory, ignore_errors=True)
    try:
        with ThreadPoolExecutor(len(brokers), thread_name_prefix="lab-kafka") as pool:
            for status in pool.map(lambda b: b.start(), brokers.values()):
                del status
        progress(f"{len(brokers)} Kafka brokers running: " + ", ".join(
            f"{alias} {broker.bootstrap}" for alias, broker in brokers.items()
        ))  # fmt: skip
        yield {
            alias: load_settings({**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": broker.bootstrap})
            for alias, broker in brokers.items()
        }
    finally:
        for broker in brokers.values():
            broker.stop()


class _Run:
    """One run's moving parts: components per cluster, mirrors, the aggregator."""

    def __init__(
        self,
        topology: Path,
        multi: MultiTopology,
        plans: Mapping[str, Plan],
        truth: Truth,
        settings: Mapping[str, Settings],
        states: Mapping[str, LabState],
        root: Path,
        options: RunOptions,
    ) -> None:
        self.topology, self.multi, self.plans, self.truth = topology, multi, plans, truth
        self.settings, self.states, self.root, self.options = settings, states, root, options
        hub = settings[HUB].kafka.bootstrap_servers
        self.mirrors = {
            name: DevMirror(
                root / "mirror" / name,
                {name: settings[name].kafka.bootstrap_servers},
                (HUB, hub),
            )
            for name in states
        }
        self.components: dict[str, Components] = {}
        self.stops: list[str] = []
        self.stopped: set[str] = set()
        """Clusters whose mirror a ``stop_mirror`` entry holds stopped."""

    async def map(self, progress: Progress) -> MultiLabRun:
        async with EdgeReader(self.settings[HUB], None, GLOBAL_EDGES) as reader:
            capture_started = time.time()
            try:
                self._start(progress)
                for name, components in self.components.items():
                    if name != HUB:  # capture sockets open, then a first scan done
                        await components.logged("capture-", CAPTURE_RUNNING)
                await asyncio.sleep(1)
                self._check()
                for name, components in self.components.items():
                    if name != HUB:
                        start_streams(components, f"callmap-lab-{name}", STREAMS_REFRESH)
                for state in self.states.values():
                    release(Path(state.state_dir))
                released = time.time()
                progress("calls released in every cluster")
                background = [
                    threading.Thread(target=run_churn, args=(Path(s.state_dir),), daemon=True)
                    for s in self.states.values()
                ]
                background += [
                    threading.Thread(target=self._stop_mirror, args=(stop, released, progress))
                    for stop in self.multi.stop_mirror
                ]
                for thread in background:
                    thread.daemon = True
                    thread.start()
                comparison = await self._wait_for_map(reader, background, progress)
                read = await self._wait_for_lifecycle(reader, capture_started)
                calls = compare_with_truth(read.truth, reader.seen.values())
                expired = {reader.pair(edge_id): t for edge_id, t in reader.expired_at.items()}
                lifecycle = check_lifecycle(read.last, expired, time.time(), LAB_TTL)
                new_again = tuple(sorted(str(reader.pair(e)) for e in reader.new_again))
                run = LabRun(
                    self.multi.name,
                    comparison,
                    calls,
                    read.truth.notes,
                    read.truth.calls,
                    new_again,
                    lifecycle,
                )
                result = MultiLabRun(run, tuple(self.states), tuple(self.stops))
                if not result.perfect:
                    for components in self.components.values():
                        progress(components.tails())
                return result
            finally:
                for components in self.components.values():
                    components.stop()
                for mirror in self.mirrors.values():
                    mirror.stop()

    def _start(self, progress: Progress) -> None:
        for name, state in self.states.items():
            self.components[name] = start_components(
                state, self.settings[name], name, self.options, progress
            )
        for mirror in self.mirrors.values():
            shutil.rmtree(mirror.directory, ignore_errors=True)
            mirror.start()
        progress(f"MirrorMaker 2 running for {', '.join(self.mirrors)} into the hub")
        log_dir = cache_dir() / "lab-runs" / self.multi.name / "hub"
        log_dir.mkdir(parents=True, exist_ok=True)
        hub_env = {
            **os.environ,
            "CALLMAP_KAFKA_BOOTSTRAP": self.settings[HUB].kafka.bootstrap_servers,
            "CALLMAP_LOG_LEVEL": "INFO",
        }
        hub = Components(log_dir, hub_env)
        hub.start(
            "aggregate",
            "aggregate",
            "--clusterset", str(self.topology),
            "--ttl", str(aggregate_ttl(self.multi)),
            "--grace", str(aggregate_grace(self.multi)),
            "--refresh-interval", str(LAB_REFRESH),
            "--tick-interval", "2",
            "--metrics-port", "0",
        )  # fmt: skip
        self.components[HUB] = hub
        progress(f"aggregator started at the hub; logs in {log_dir}")

    def _check(self) -> None:
        for components in self.components.values():
            components.check()
        for name, mirror in self.mirrors.items():
            if name not in self.stopped and not mirror.running():
                raise RuntimeError(f"MirrorMaker of {name} stopped; see {mirror.log_file}")

    def _stop_mirror(self, stop: MirrorStop, released: float, progress: Progress) -> None:
        mirror = self.mirrors[stop.cluster]
        time.sleep(max(0.0, released + stop.at - time.time()))
        self.stopped.add(stop.cluster)
        mirror.stop()
        line = f"{stop.cluster}: mirror stopped at {time.time() - released:.0f} s"
        self.stops.append(line)
        progress(line)
        time.sleep(stop.seconds)
        mirror.start()
        self.stopped.discard(stop.cluster)
        line = f"{stop.cluster}: mirror started again at {time.time() - released:.0f} s"
        self.stops.append(line)
        progress(line)

    async def _wait_for_map(
        self, reader: EdgeReader, background: list[threading.Thread], progress: Progress
    ) -> Comparison:
        longest = max((s.at + s.seconds for s in self.multi.stop_mirror), default=0.0)
        deadline = time.monotonic() + max(self.options.seconds, longest + 120)
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            self._check()
            if await reader.poll(2.0):
                stable_since = time.monotonic()
            result = compare(self.truth, reader.seen.values())
            progress(f"{len(result.observed)} global edges observed, {len(result.missing)} missing")
            settled = time.monotonic() - stable_since >= self.options.settle
            busy = any(thread.is_alive() for thread in background)
            if not result.missing and not busy and settled:
                return result
        return compare(self.truth, reader.seen.values())

    def read_calls(self, capture_started: float) -> GlobalCalls:
        lives, records = {}, {}
        for name, state in self.states.items():
            pods = {pod.key: pod for pod in self.plans[name].all_pods}
            current = load_state(Path(state.state_dir))
            lives[name] = [pod_life(pods[f"{p.namespace}/{p.name}"], p) for p in current.pods]
            records[name], _torn = read_call_logs(Path(state.state_dir) / "calls")
        return global_calls(self.multi, self.plans, lives, records, capture_started)

    async def _wait_for_lifecycle(self, reader: EdgeReader, capture_started: float) -> GlobalCalls:
        """Wait until the pairs whose calls stopped are due to have expired."""
        deadline = time.time() + self.options.seconds
        while True:
            read = self.read_calls(capture_started)
            due = expiry_due(read.last, time.time(), LAB_TTL)
            if time.time() >= min(due, deadline):
                return read
            await reader.poll(2.0)
