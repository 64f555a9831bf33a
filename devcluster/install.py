"""callmap installed into the development cluster the way users install it: ``helm install``.

The chart is deploy/helm/callmap, unchanged; only values differ from a
user's, and each is said here: the image built on this machine (never pulled),
the cluster's Kafka broker on the host, and the SQLite sink on an ``emptyDir``
(the development cluster has no storage provisioner). Helm waits for every
Deployment and DaemonSet to be ready and for the topics Job to finish.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from devcluster.errors import DevClusterError
from devtools.helm import CHART, fetch, helm_environment

RELEASE = "callmap"
NAMESPACE = "callmap"


def chart_values(
    image: str, kafka_bootstrap: str, cluster_name: str, overrides: Mapping[str, Any] = {}
) -> dict[str, Any]:
    """The chart's values for the development cluster, ``overrides`` merged in last."""
    repository, tag = image.rsplit(":", 1)
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "clusterName": cluster_name,
        "kafka": {"bootstrapServers": kafka_bootstrap},
        "sinks": {"sqlite": {"persistence": {"enabled": False}}},
    }
    return merge(values, overrides)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def helm_install(
    repo: Path, kubeconfig: Path, values: Mapping[str, Any], directory: Path, timeout: float = 300
) -> str:
    """``helm upgrade --install`` of the chart with ``values``; Helm's report."""
    directory.mkdir(parents=True, exist_ok=True)
    values_file = directory / "values.yaml"
    values_file.write_text(yaml.safe_dump(dict(values), sort_keys=False))
    command = [
        str(fetch()),
        "upgrade",
        "--install",
        RELEASE,
        str(repo / CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--values",
        str(values_file),
        "--wait",
        f"--timeout={int(timeout)}s",
    ]
    environment = {**helm_environment(), "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if result.returncode != 0:
        raise DevClusterError(f"helm install failed: {result.stderr.strip()}")
    return result.stdout


def helm_uninstall(kubeconfig: Path, timeout: float = 120) -> None:
    command = [str(fetch()), "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait"]
    command.append(f"--timeout={int(timeout)}s")
    environment = {**helm_environment(), "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if result.returncode != 0 and "not found" not in result.stderr:
        raise DevClusterError(f"helm uninstall failed: {result.stderr.strip()}")
