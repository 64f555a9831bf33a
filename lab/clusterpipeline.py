"""callmap's components for a run on a real cluster, as its Helm chart installs them.

:func:`start_pipeline` installs the chart through the development cluster's
``install_callmap`` (``helm upgrade --install``, release ``callmap`` in
namespace ``callmap``) with the run's values: its cluster name and stream app
id, the topology's label keys for the watcher, one watcher and one stream
worker, scans every 2 s, a 30 s grace (the watcher may wait for a Lease a
stopped leader did not release) and 5 s refreshes (so that ports and
sources from later sightings reach the topic within the run), no sink (the run
reads the edges topic itself). :meth:`ChartPipeline.stop` uninstalls the
release, so a callmap installed before the run is gone after it.

:mod:`lab.clusterrun` takes the starter as an argument (:data:`StartPipeline`),
so that its tests can stand a pipeline in for the chart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from callmap.config import Settings
from lab.clusterlab import REPO, Cluster, ClusterStatus
from lab.clusterrecord import KubeAccess
from lab.errors import LabError
from lab.kubeapi import KubeApiError

NETNS_DIR = Path("/var/run/netns")
CHART_NAMESPACE = "callmap"
BROKEN = frozenset({"CrashLoopBackOff", "Error", "ErrImageNeverPull", "CreateContainerConfigError"})


@dataclass(frozen=True, slots=True)
class PipelineRequest:
    """What any way of running the pipeline needs to know."""

    cluster: Cluster
    status: ClusterStatus
    settings: Settings
    """The cluster's broker (``status.kafka_bootstrap``)."""
    run_cluster: str
    """The cluster name every record of this run carries."""
    app_id: str
    """The stream app's id, the run's own."""
    label_keys: tuple[str, ...]
    """Pod labels the watcher keeps."""
    log_dir: Path
    """Where processes of this machine log."""
    access: KubeAccess
    """The cluster's API, as its administrator."""


class Pipeline(Protocol):
    def check(self) -> None:
        """Raise if a component has died."""

    def tails(self, lines: int = 15) -> str:
        """The last lines of the components' logs, for a post-mortem."""

    def stop(self) -> None:
        """Stop every component (again is harmless)."""


StartPipeline = Callable[[PipelineRequest], Pipeline]


def chart_values(request: PipelineRequest) -> dict[str, Any]:
    """The Helm values a run sets (merged over the development cluster's own)."""
    keys = list(request.label_keys)
    return {
        "clusterName": request.run_cluster,
        "clusterDomain": request.status.cluster_domain,
        "capture": {"scanInterval": 2},
        "watch": {"replicas": 1, "labels": keys, "maxLabels": max(10, len(keys))},
        "streams": {
            "replicas": 1,
            "appId": request.app_id,
            "grace": 30,
            "tickInterval": 2,
            "refreshInterval": 5,
        },
        "sinks": {"sqlite": {"enabled": False}},
    }


def start_pipeline(request: PipelineRequest) -> Pipeline:
    """Install the chart with the run's values; returns once Helm saw everything ready."""
    try:
        request.cluster.install_callmap(REPO, chart_values(request))
    except Exception as exc:  # the development cluster's own error family
        raise LabError(f"installing callmap in the cluster failed: {exc}") from None
    return ChartPipeline(request.cluster, request.access)


@dataclass(slots=True)
class ChartPipeline:
    """The chart's release in the cluster."""

    cluster: Cluster
    access: KubeAccess
    stopped: bool = False

    def _pods(self) -> list[dict[str, Any]]:
        with self.access.client() as client:
            try:
                answer = client.get(f"/api/v1/namespaces/{CHART_NAMESPACE}/pods")
            except KubeApiError as exc:
                raise LabError(f"cannot list callmap's pods: {exc}") from None
        items: list[dict[str, Any]] = answer.get("items", [])
        return items

    def check(self) -> None:
        for pod in self._pods():
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                state = container.get("state") or {}
                reason = (state.get("waiting") or state.get("terminated") or {}).get("reason")
                if reason in BROKEN:
                    raise LabError(f"callmap pod {pod['metadata']['name']}: {reason}")

    def tails(self, lines: int = 15) -> str:
        kubectl = self.cluster.kubectl
        parts = []
        for pod in self._pods():
            name = pod["metadata"]["name"]
            try:
                text = str(kubectl("logs", "-n", CHART_NAMESPACE, name, f"--tail={lines}"))
            except Exception as exc:  # a post-mortem must not fail the run
                text = f"(no logs: {exc})"
            parts.append(f"--- {name} (last {lines} lines)\n{text.rstrip()}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.cluster.uninstall_callmap()
        except Exception as exc:  # the development cluster's own error family
            raise LabError(f"uninstalling callmap from the cluster failed: {exc}") from None
