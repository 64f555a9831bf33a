"""``lab run --on cluster``: the whole pipeline on a real cluster, against a truth of its own.

The same topology files and the same report as the netns lab's ``lab run``
(:mod:`lab.pipeline`), in this order:

1. the API recorder (:mod:`lab.clusterrecord`) starts and lists everything,
   so that the record is older than anything the lab creates;
2. the lab comes up with its calls held (:meth:`lab.clusterlab.ClusterLab.up`):
   only ``before_capture`` calls run;
3. callmap's components start (one swappable call, :mod:`lab.clusterpipeline`)
   with a cluster name and stream app of the run's own, an
   :class:`~lab.edgereader.EdgeReader` reading the edges topic from its end;
   once they run, that moment is "capture started" for the truth;
4. the calls are released, the churn runs in a thread of its own
   (:mod:`lab.clusterchurn`);
5. every two seconds the truth is made again from the call logs and the API
   record (:mod:`lab.clustertruth`) and compared with the map, ports
   included; the run ends once nothing is missing, the churn is done,
   neither the map nor the truth changed for ``settle`` seconds and the
   stream worker keeps up with its inputs (:mod:`lab.groupprogress`: a
   stalled worker leaves the map quiet too), or when the time is up;
6. everything stops; the lab's namespaces go (``down``), its state directory
   stays, with ``truth.json`` and ``report.json`` beside the logs and record.

Only what concerns the lab is compared (:func:`lab_scope`): an observed edge
counts when its client or its server is a workload of the topology's
namespaces, or its server is one of the topology's externals, whoever the
client (so a DNS server's upstream lookups shown as its calls count). The
rest of a real cluster's traffic (CoreDNS to the API server, callmap's own
components) is listed as ``ignored``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callmap.broker import ensure_topics
from callmap.config import Settings, load_settings
from lab.addressing import Plan
from lab.clusterchurn import run_churn
from lab.clusterhistory import ApiHistory
from lab.clusterlab import Cluster, ClusterLab
from lab.clusterpipeline import Pipeline, PipelineRequest, StartPipeline, start_pipeline
from lab.clusterplan import lab_workloads
from lab.clusterrecord import ApiRecorder, load_record, read_call_logs
from lab.clustertruth import ClusterTruth, true_edges
from lab.compare import Comparison, compare_with_truth
from lab.edgereader import EdgeReader
from lab.errors import LabError
from lab.groupprogress import GroupProgress, input_topics
from lab.kubeobjects import label_keys
from lab.pipeline import Progress, RunOptions
from lab.truth import ExpectedEdge

PIPELINE_WARMUP = 5.0
"""Seconds for the components to open their capture sockets and list the cluster."""


@dataclass(frozen=True, slots=True)
class ClusterRunResult:
    cluster: str
    """The run's cluster name: its edges on the topic, its logs in the callmap cache."""
    comparison: Comparison
    truth: ClusterTruth

    def as_json(self) -> dict[str, Any]:
        """``lab run --json``'s report, and what only a cluster run has."""
        return {
            "cluster": self.cluster,
            **self.comparison.as_json(),
            "on": "cluster",
            "tolerated": [e.as_json() for e in sorted(self.truth.tolerated)],
            "truth_notes": list(self.truth.notes),
            "calls_logged": self.truth.calls,
        }


def run_on_cluster(
    topology: Path,
    options: RunOptions,
    progress: Progress = print,
    cluster: Cluster | None = None,
    pipeline: StartPipeline = start_pipeline,
) -> ClusterRunResult:
    """Run the pipeline on ``topology`` on the cluster; the comparison with the truth."""
    lab = ClusterLab.open(topology, options.state_dir, cluster, progress)
    settings = load_settings({**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": lab.status.kafka_bootstrap})
    asyncio.run(ensure_topics(settings.kafka, settings.topics))
    run_cluster = f"{lab.plan.topology.cluster}-{uuid.uuid4().hex[:6]}"
    lab.record_path.unlink(missing_ok=True)
    try:
        with ApiRecorder(lab.access, lab.record_path) as recorder:
            if not recorder.wait_listed(30):
                raise LabError(
                    f"the API recorder could not list the cluster: {recorder.last_error}"
                )
            lab.up(hold=True)
            progress(f"lab {lab.name} is up on the cluster, calls held")
            result = asyncio.run(_map(lab, settings, run_cluster, options, progress, pipeline))
    finally:
        progress(f"lab {lab.name}: removing its namespaces")
        try:
            lab.down()
        except LabError as exc:  # not to hide why the run stopped
            progress(f"lab {lab.name}: down failed: {exc}")
        finally:
            lab.client.close()
    (lab.state_dir / "truth.json").write_text(json.dumps(result.truth.as_json(), indent=2))
    (lab.state_dir / "report.json").write_text(json.dumps(result.as_json(), indent=2))
    return result


async def _map(
    lab: ClusterLab,
    settings: Settings,
    run_cluster: str,
    options: RunOptions,
    progress: Progress,
    starter: StartPipeline,
) -> ClusterRunResult:
    app_id = f"callmap-lab-{run_cluster}"
    async with EdgeReader(settings, run_cluster) as reader:
        request = PipelineRequest(
            cluster=lab.cluster,
            status=lab.status,
            settings=settings,
            run_cluster=run_cluster,
            app_id=app_id,
            label_keys=label_keys(lab.plan),
            log_dir=lab.state_dir / "components",
            access=lab.access,
        )
        pipeline = starter(request)
        try:
            await asyncio.sleep(PIPELINE_WARMUP)
            pipeline.check()
            capture_started = time.time()
            lab.release()
            progress(f"lab {lab.name} released its calls; cluster {run_cluster}")
            churn = _ChurnThread(lab.with_client(lab.access.client()))
            churn.start()
            async with GroupProgress(settings.kafka, app_id, input_topics(app_id)) as worker:
                result = await _wait_for_map(
                    lab,
                    reader,
                    pipeline,
                    worker,
                    churn,
                    capture_started,
                    options,
                    progress,
                    run_cluster,
                )
            if not result.comparison.perfect:
                progress(pipeline.tails())
        finally:
            try:
                pipeline.stop()
            except LabError as exc:  # not to hide the run's own outcome
                progress(f"stopping callmap's components failed: {exc}")
    return result


class _ChurnThread(threading.Thread):
    """The churn, in a thread with a connection of its own; its error is kept for the run."""

    def __init__(self, lab: ClusterLab) -> None:
        super().__init__(name="cluster-churn", daemon=True)
        self.lab = lab
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            run_churn(self.lab)
        except BaseException as exc:  # re-raised by the run
            self.error = exc
        finally:
            self.lab.client.close()


async def _wait_for_map(
    lab: ClusterLab,
    reader: EdgeReader,
    pipeline: Pipeline,
    worker: GroupProgress,
    churn: _ChurnThread,
    capture_started: float,
    options: RunOptions,
    progress: Progress,
    run_cluster: str,
) -> ClusterRunResult:
    deadline = time.monotonic() + options.seconds
    stable_since = time.monotonic()
    scope = lab_scope(lab.plan)
    state: object = None
    while True:
        pipeline.check()
        if churn.error is not None:
            raise LabError(f"churn failed: {churn.error}") from churn.error
        await reader.poll(2.0)
        truth = lab_truth(lab, capture_started)
        comparison = compare_with_truth(truth, reader.edges.values(), scope)
        # Settled: neither the truth nor the map (pairs and their ports) changed for a while;
        # refreshes that change nothing do not count.
        now = (truth.edges, truth.tolerated, comparison.observed, dict(comparison.seen_ports))
        if now != state:
            state, stable_since = now, time.monotonic()
        result = ClusterRunResult(run_cluster, comparison, truth)
        # A quiet map of a stalled worker has not settled: it must keep up too.
        keeping_up = await worker.caught_up()
        progress(
            f"{len(comparison.observed)} edges observed, {len(comparison.missing)} missing, "
            f"{len(comparison.missing_ports)} ports missing ({truth.calls} calls logged)"
            + ("" if keeping_up else f"; {worker.describe()}")
        )
        settled = keeping_up and time.monotonic() - stable_since >= options.settle
        complete = not comparison.missing
        if (complete and not churn.is_alive() and settled) or time.monotonic() >= deadline:
            return result


def lab_truth(lab: ClusterLab, capture_started: float | None) -> ClusterTruth:
    """The truth as the call logs and the API record tell it now."""
    calls, _torn = read_call_logs(lab.log_dir)  # a torn last line is still being written
    events, _bad = load_record(lab.record_path)
    history = ApiHistory.from_events(events)
    return true_edges(calls, history, lab.status.cluster_domain, capture_started)


def lab_scope(plan: Plan) -> Callable[[ExpectedEdge], bool]:
    """Whether an observed edge is the lab's business (see the module's docstring)."""
    topology = plan.topology
    spaces = {w.namespace for w in lab_workloads(plan)}
    outside = {f"external:{e.name}" for e in topology.externals}
    outside |= {f"ip:{ip}" for e in topology.externals for ip in e.ips}

    def in_scope(edge: ExpectedEdge) -> bool:
        # Whoever the client: nothing of the cluster's own calls the topology's internet
        # (a DNS server's upstream lookups showing as its calls would be wrong).
        return (
            _namespace(edge.client) in spaces
            or _namespace(edge.server) in spaces
            or edge.server in outside
        )

    return in_scope


def _namespace(endpoint: str) -> str | None:
    """``ns`` of an ``ns/workload`` endpoint; None for ``node:``, ``ip:`` and the like."""
    if ":" in endpoint or "/" not in endpoint:
        return None
    return endpoint.partition("/")[0]
