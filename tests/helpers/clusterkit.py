"""Helpers for tests on the development cluster: run a pod to its end."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from devcluster.cluster import DevCluster


def run_pod(
    cluster: DevCluster,
    command: list[str],
    *,
    node: str | None = None,
    namespace: str = "default",
    timeout: float = 120,
) -> str:
    """Run ``command`` in a pod of the callmap image to completion; its output."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "probe",
                "image": cluster.status().images["callmap"],
                "imagePullPolicy": "Never",
                "command": command,
            }
        ],
    }
    if node:
        spec["nodeName"] = node
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.kubectl(
            "-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}"
        )
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    logs = cluster.kubectl("-n", namespace, "logs", name, check=False)
    cluster.kubectl("-n", namespace, "delete", "pod", name, "--wait=false")
    assert phase == "Succeeded", f"pod {name} ended {phase or 'never'}: {logs}"
    return logs
