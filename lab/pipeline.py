"""``lab run`` and the demo: the whole pipeline on a lab, against the truth.

Brings the lab up with its calls held, starts the real components as
processes (a capture agent in every node namespace, the watcher, a stream
worker, the SQLite sink), releases the calls and runs the churn, then
reads the edges topic until the map is complete and stable or the time is
up, and compares it with the truth derived from the same topology. Every
component runs exactly as in production, through the ``callmap`` command; the
lab imports none of them.

The watcher reads the lab's inventory file, or, with ``kubernetes``, lists
and watches the lab's own API server (``lab up --kubernetes``) with leader
election, keeping the pod labels the topology uses, so that it publishes the
same identities as the file would.

The capture agents follow connection tracking's UDP flows as they do by
default (``--conntrack-udp``), whether the topology has UDP calls or not: a
UDP flow nobody planned is an unexpected edge.

Each run stamps its records with a cluster name of its own
(``<cluster>-<run id>``) and runs a stream app of its own (``--app-id`` of the
same name), so runs on one broker never see each other's edges or offsets.
Components die with the run (``PR_SET_PDEATHSIG``), even when it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callmap.broker import ensure_topics
from callmap.config import Settings, load_settings
from callmap.paths import cache_dir
from callmap.readiness import CAPTURE_RUNNING
from devtools.kafka import DevBroker
from lab.addressing import Plan, plan
from lab.calltruth import lab_call_truth, last_calls
from lab.churn import run_churn
from lab.clusterrecord import read_call_logs
from lab.clustertruth import ClusterTruth
from lab.compare import Comparison, compare, compare_with_truth
from lab.edgereader import EdgeReader
from lab.groupprogress import GroupProgress, input_topics
from lab.kubelab import require_binaries
from lab.kubeobjects import label_keys
from lab.lifecycle import (
    EDGE_REFRESH,
    LAB_REFRESH,
    LAB_TTL,
    Lifecycle,
    check_lifecycle,
    expiry_due,
)
from lab.runtime import pod_life, release, up
from lab.state import LabState, load_state
from lab.teardown import down
from lab.topology import load_topology
from lab.truth import ExpectedEdge, Truth, expected_edges

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RunOptions:
    seconds: float = 180.0
    """Give up waiting for a complete map after this long."""
    settle: float = 10.0
    """The map must stay unchanged this long after it is complete."""
    streams_delay: float = 0.0
    """Start the stream app this much later, so it must catch up a backlog."""
    state_dir: Path | None = None
    """Where the lab keeps its files (default: in the callmap cache)."""
    sqlite: Path | None = None
    """Also run the SQLite sink into this file."""
    kubernetes: bool = False
    """Register the lab in an API server of its own and watch that, not the inventory file."""
    tcp_info: bool = False
    """Run capture with ``--tcp-info``: socket tables through sock_diag, with round-trip times."""


@dataclass(slots=True)
class Components:
    """The processes a run started, by name, and where they log."""

    log_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "callmap", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    async def logged(self, prefix: str, text: str, timeout: float = 60.0) -> None:
        """Until every component whose name starts with ``prefix`` has logged ``text``
        (a loaded machine can take seconds to start one)."""
        deadline = time.monotonic() + timeout
        waiting = [name for name in self.processes if name.startswith(prefix)]
        while waiting:
            self.check()
            waiting = [
                name
                for name in waiting
                if text not in (self.log_dir / f"{name}.log").read_text(errors="replace")
            ]
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(waiting)} did not log {text!r} in {timeout:.0f} s")
            await asyncio.sleep(0.1)

    def tails(self, lines: int = 15) -> str:
        """The last lines of every component's log, for a post-mortem."""
        parts = []
        for name in self.processes:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
            parts.append(f"--- {name} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the run that started us dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def kafka_settings(progress: Progress) -> Settings:
    """Settings for the broker in CALLMAP_KAFKA_BOOTSTRAP, or the development broker."""
    if "CALLMAP_KAFKA_BOOTSTRAP" in os.environ:
        return load_settings()
    status = DevBroker.named().start()
    progress(f"Kafka running at {status.bootstrap} (`callmap dev kafka stop` stops it)")
    return load_settings({**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": status.bootstrap})


@contextlib.contextmanager
def running_lab(
    topology: Path, state_dir: Path | None, kubernetes: bool = False
) -> Iterator[LabState]:
    state = up(topology, state_dir, hold=True, kubernetes=kubernetes)
    try:
        yield state
    finally:
        down(state.name, Path(state.state_dir))


def start_components(
    state: LabState, settings: Settings, cluster: str, options: RunOptions, progress: Progress
) -> Components:
    # Outside the lab's state directory, which `lab down` removes: kept for a post-mortem.
    log_dir = cache_dir() / "lab-runs" / cluster
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "CALLMAP_CLUSTER": cluster,
        "CALLMAP_CLUSTER_DOMAIN": state.domain,
        "CALLMAP_LOG_LEVEL": "INFO",
    }
    components = Components(log_dir, env)
    components.start("watch", "watch", *watch_args(state, cluster))
    host_network_nodes = {p.node for p in state.pods if p.host_network}
    tcp_info = ["--tcp-info"] if options.tcp_info else []
    for node in state.nodes:
        scan = [arg for netns in node.pod_netns for arg in ("--scan-netns", netns)]
        if node.name in host_network_nodes:
            scan += ["--scan-netns", node.netns]
        components.start(
            f"capture-{node.name}",
            "capture",
            "run",
            "--netns",
            node.netns,
            "--node",
            node.name,
            "--scan-interval",
            "2",
            "--refresh-interval",
            str(LAB_REFRESH),
            "--stats-interval",
            "10",
            "--metrics-port",
            "0",
            *tcp_info,
            *scan,
        )
    if options.sqlite is not None:
        components.start(
            "sink",
            "sink",
            "sqlite",
            "--path",
            str(options.sqlite),
            "--group",
            f"callmap-lab-sink-{cluster}",
            "--metrics-port",
            "0",
        )
    progress(f"capture on {len(state.nodes)} node(s), watcher and sink started")
    return components


def watch_args(state: LabState, cluster: str) -> list[str]:
    """``callmap watch`` for this lab: its API server if it has one, else its inventory."""
    if state.kube is None:
        return [
            "--inventory",
            state.inventory,
            "--cluster",
            cluster,
            "--no-leader-election",
            "--metrics-port",
            "0",
        ]
    keys = label_keys(plan(load_topology(state.topology)))
    labels = [arg for key in keys for arg in ("--label", key)]
    return [
        "--kubeconfig",
        state.kube.kubeconfig,
        "--cluster",
        cluster,
        "--identity",
        f"lab-run-{cluster}",
        *labels,
        "--max-labels",
        str(max(10, len(keys))),
        "--metrics-port",
        "0",
    ]


def start_streams(components: Components, app_id: str, refresh: float | None = None) -> None:
    """The stream worker; ``refresh``: its ``--refresh-interval`` (default: the app's)."""
    extra = () if refresh is None else ("--refresh-interval", str(refresh))
    components.start(
        "streams",
        "streams",
        "worker",
        "--app-id",
        app_id,
        "--grace",
        "10",
        "--tick-interval",
        "2",
        "--ttl",
        str(LAB_TTL),
        "--data-dir",
        str(components.log_dir),
        "--metrics-port",
        "0",
        *extra,
    )


@dataclass(frozen=True, slots=True)
class LabRun:
    """A run's map against both truths."""

    cluster: str
    """The run's cluster name: it finds the run's edges, and its logs in the callmap cache."""
    comparison: Comparison
    """Against the truth the plan gives by callmap's rules (:mod:`lab.truth`)."""
    calls: Comparison
    """Against what the callers logged, explained by the plan (:mod:`lab.calltruth`)."""
    notes: tuple[str, ...] = ()
    """Where the call logs and the plan disagree."""
    logged: int = 0
    """Call log lines read."""
    new_again: tuple[str, ...] = ()
    """Edges announced ``new`` more than once (``client -> server``)."""
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    """Edges expired too early, or not when their calls stopped."""
    round_trips: tuple[str, ...] = ()
    """Edges (``client -> server``) whose health counted round-trip times (``--tcp-info``)."""

    @property
    def perfect(self) -> bool:
        right = self.comparison.perfect and self.calls.perfect
        return right and not self.new_again and self.lifecycle.right

    def as_json(self) -> dict[str, Any]:
        calls = {**self.calls.as_json(), "notes": list(self.notes), "logged": self.logged}
        return {
            "cluster": self.cluster,
            **self.comparison.as_json(),
            "calls": calls,
            "new_again": list(self.new_again),
            "lifecycle": self.lifecycle.as_json(),
            "round_trips": list(self.round_trips),
        }

    def as_text(self) -> str:
        text = self.comparison.as_text()
        if self.new_again:
            text += "\nannounced new more than once: " + ", ".join(self.new_again)
        for pair in self.lifecycle.early:
            text += f"\nexpired while still called: {pair}"
        for pair in self.lifecycle.late:
            text += f"\nnot expired a TTL after its calls stopped: {pair}"
        calls = self.calls.as_text().replace("\n", "\n  ")
        return f"{text}\nagainst the callers' logs ({self.logged} lines):\n  {calls}"


def run(topology: Path, options: RunOptions, progress: Progress = print) -> LabRun:
    """Run the pipeline on ``topology``; the map against both truths."""
    the_plan = plan(load_topology(topology))
    truth: Truth = expected_edges(the_plan)
    if options.kubernetes:
        require_binaries()  # before a broker is started for nothing
    settings = kafka_settings(progress)
    asyncio.run(ensure_topics(settings.kafka, settings.topics))
    with running_lab(topology, options.state_dir, options.kubernetes) as state:
        cluster = f"{state.cluster}-{uuid.uuid4().hex[:6]}"
        return asyncio.run(_map_lab(state, the_plan, settings, cluster, truth, options, progress))


@dataclass(frozen=True, slots=True)
class CallsRead:
    """What the callers' logs say so far."""

    truth: ClusterTruth
    last: dict[ExpectedEdge, float]
    """When each pair was last called successfully."""


def read_calls(state_dir: Path, the_plan: Plan, capture_started: float) -> CallsRead:
    pods = {pod.key: pod for pod in the_plan.all_pods}
    lives = [pod_life(pods[f"{p.namespace}/{p.name}"], p) for p in load_state(state_dir).pods]
    calls, _torn = read_call_logs(state_dir / "calls")  # a torn last line is still being written
    truth = lab_call_truth(the_plan, lives, calls, capture_started)
    last = last_calls(the_plan, lives, calls, capture_started)
    return CallsRead(truth, {ExpectedEdge(c, s): t for (c, s), t in last.items()})


async def _map_lab(
    state: LabState,
    the_plan: Plan,
    settings: Settings,
    cluster: str,
    truth: Truth,
    options: RunOptions,
    progress: Progress,
) -> LabRun:
    """Run the components on the held lab, release it, and read the map they make."""
    async with EdgeReader(settings, cluster) as reader:
        capture_started = time.time()
        components = start_components(state, settings, cluster, options, progress)
        progress(f"component logs in {components.log_dir}")
        try:
            # Capture sockets open, and a first scan sees the before_capture calls.
            await components.logged("capture-", CAPTURE_RUNNING)
            await asyncio.sleep(1)
            components.check()
            if options.streams_delay <= 0:
                start_streams(components, f"callmap-lab-{cluster}", EDGE_REFRESH)
            release(Path(state.state_dir))
            progress(f"lab {state.name} released its calls; cluster {cluster}")
            churn = threading.Thread(target=run_churn, args=(Path(state.state_dir),), daemon=True)
            churn.start()
            app_id = f"callmap-lab-{cluster}"
            async with GroupProgress(settings.kafka, app_id, input_topics(app_id)) as worker:
                comparison = await _wait_for_map(
                    truth, reader, components, worker, churn, options, progress, app_id
                )
            state_dir = Path(state.state_dir)
            read = await _wait_for_lifecycle(state_dir, the_plan, reader, capture_started, options)
            calls = compare_with_truth(read.truth, reader.seen.values())
            expired = {reader.pair(edge_id): t for edge_id, t in reader.expired_at.items()}
            lifecycle = check_lifecycle(read.last, expired, time.time(), LAB_TTL)
            new_again = tuple(sorted(str(reader.pair(edge_id)) for edge_id in reader.new_again))
            round_trips = tuple(sorted(str(pair) for pair in reader.with_round_trips()))
            result = LabRun(
                cluster,
                comparison,
                calls,
                read.truth.notes,
                read.truth.calls,
                new_again,
                lifecycle,
                round_trips,
            )
            if not result.perfect:
                progress(components.tails())
        finally:
            components.stop()
    return result


async def _wait_for_lifecycle(
    state_dir: Path,
    the_plan: Plan,
    reader: EdgeReader,
    capture_started: float,
    options: RunOptions,
) -> CallsRead:
    """Once the map is complete: wait until the pairs whose calls stopped are due to
    have expired (the callers' logs say when they stopped), within the run's time."""
    deadline = time.time() + options.seconds
    while True:
        read = read_calls(state_dir, the_plan, capture_started)
        due = expiry_due(read.last, time.time(), LAB_TTL)
        if time.time() >= min(due, deadline):
            return read
        await reader.poll(2.0)


async def _wait_for_map(
    truth: Truth,
    reader: EdgeReader,
    components: Components,
    worker: GroupProgress,
    churn: threading.Thread,
    options: RunOptions,
    progress: Progress,
    app_id: str,
) -> Comparison:
    started = time.monotonic()
    deadline = started + options.seconds
    streams_at = started + options.streams_delay if options.streams_delay > 0 else None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        components.check()
        if streams_at is not None and time.monotonic() >= streams_at:
            start_streams(components, app_id, EDGE_REFRESH)
            streams_at = None
            progress("stream app started late; it catches up the backlog")
        if await reader.poll(2.0):
            stable_since = time.monotonic()
        result = compare(truth, reader.seen.values())
        # A quiet map of a stalled worker has not settled: it must keep up too.
        keeping_up = streams_at is None and await worker.caught_up()
        progress(
            f"{len(result.observed)} edges observed, {len(result.missing)} missing"
            + ("" if keeping_up or streams_at else f"; {worker.describe()}")
        )
        settled = keeping_up and time.monotonic() - stable_since >= options.settle
        if result.complete and not churn.is_alive() and settled:
            return result
    return compare(truth, reader.seen.values())
