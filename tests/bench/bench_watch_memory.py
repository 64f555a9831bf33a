"""Benchmark: what the watcher keeps for 100,000 pods, against keeping the objects.

Synthetic pods as the API returns them (decoded JSON: dicts with metadata,
managedFields, labels, annotations, two containers, status with conditions,
container statuses and dual-stack IPs; 10,000 Deployments of 10 pods each,
across 200 namespaces and 500 nodes) arrive in list pages of 500, as a list
delivers them. Each variant runs in a fresh process, so that RSS is its own:

- ``floor``: the watcher's modules imported, no pods (the interpreter, kubernetes-
  asyncio, aiokafka, msgspec, ...);
- ``watcher``: every page through the real :class:`watch.handlers.PodHandler`
  (slim, resolve owners through the cache, catalog, identity tables), the
  objects dropped page by page — what ``callmap watch`` holds;
- ``objects``: the same pages, keeping the dicts (what an informer-style cache
  of full objects holds), as the baseline.

Goal: the watcher under 200 MB of RSS for 100,000 pods, floor included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PODS = 100_000
PAGE = 500
PODS_PER_DEPLOYMENT = 10
NAMESPACES = 200
NODES = 500
GOAL_MB = 200.0


def memory() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def names(index: int) -> dict[str, str]:
    deployment = index // PODS_PER_DEPLOYMENT
    return {
        "namespace": f"team-{deployment % NAMESPACES:03d}",
        "deployment": f"service-{deployment:05d}",
        "hash": f"{deployment * 7919 % 16**10:010x}",
        "pod": f"service-{deployment:05d}-{deployment * 7919 % 16**10:010x}-{index:05x}",
        "node": f"node-{index % NODES:03d}",
    }


def owner_uid(kind: str, deployment: int) -> str:
    return f"{kind[:2].lower()}{deployment:06d}-0000-4000-8000-000000000000"


def pod(index: int) -> dict[str, Any]:
    """One pod as the API returns it (decoded JSON)."""
    n = names(index)
    deployment = index // PODS_PER_DEPLOYMENT
    uid = f"{index:08x}-1b2c-4d5e-8f90-{index * 2654435761 % 16**12:012x}"
    ip4 = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
    ip6 = f"fd00:10::{index >> 16:x}:{index & 0xFFFF:x}"
    time_ = "2024-05-01T12:00:00Z"
    container = {
        "name": "app",
        "image": f"registry.example.com/{n['deployment']}:1.{deployment % 40}.0",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": f"SETTING_{k}", "value": f"value-{k}"} for k in range(6)],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}},
        "volumeMounts": [
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io"}
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    sidecar = container | {"name": "proxy", "image": "registry.example.com/proxy:2.4.1", "env": []}
    status_of = {
        "ready": True,
        "restartCount": 0,
        "started": True,
        "imageID": f"registry.example.com/app@sha256:{index:064x}",
        "containerID": f"containerd://{index * 31:064x}",
        "state": {"running": {"startedAt": time_}},
        "lastState": {},
    }
    return {
        "metadata": {
            "name": n["pod"],
            "generateName": f"{n['deployment']}-{n['hash']}-",
            "namespace": n["namespace"],
            "uid": uid,
            "resourceVersion": str(1000 + index),
            "creationTimestamp": time_,
            "labels": {
                "app": n["deployment"],
                "app.kubernetes.io/name": n["deployment"],
                "app.kubernetes.io/part-of": "shop",
                "pod-template-hash": n["hash"],
                "team": n["namespace"],
                "version": f"1.{deployment % 40}.0",
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "kubectl.kubernetes.io/restartedAt": time_,
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{n['deployment']}-{n['hash']}",
                    "uid": owner_uid("ReplicaSet", deployment),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": time_,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {"f:labels": {f"f:{k}": {} for k in ("app", "team")}},
                        "f:spec": {"f:containers": {'k:{"name":"app"}': {"f:image": {}}}},
                    },
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": time_,
                    "fieldsType": "FieldsV1",
                    "subresource": "status",
                    "fieldsV1": {"f:status": {"f:podIPs": {}, "f:conditions": {}}},
                },
            ],
        },
        "spec": {
            "containers": [container, sidecar],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420}}],
            "nodeName": n["node"],
            "serviceAccountName": "default",
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": time_}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "hostIP": f"192.168.{index % NODES // 250}.{index % NODES % 250}",
            "podIP": ip4,
            "podIPs": [{"ip": ip4}, {"ip": ip6}],
            "startTime": time_,
            "containerStatuses": [status_of | {"name": "app"}, status_of | {"name": "proxy"}],
            "qosClass": "Burstable",
        },
    }


def pages() -> Iterator[list[dict[str, Any]]]:
    for start in range(0, PODS, PAGE):
        yield [pod(index) for index in range(start, min(start + PAGE, PODS))]


async def run_watcher() -> dict[str, Any]:
    from callmap.counters import Counters
    from watch.catalog import Catalog
    from watch.handlers import PodHandler
    from watch.identitytable import Change, IdentityTables
    from watch.objects import OwnerRef, SlimOwner
    from watch.options import LabelPolicy
    from watch.ownercache import OwnerResolver

    async def fetch(ref: OwnerRef, namespace: str) -> SlimOwner | None:
        """The API server's answer for a ReplicaSet (owned by its Deployment) or a Deployment."""
        deployment = int(ref.uid[2:8])
        if ref.kind == "Deployment":
            return SlimOwner(uid=ref.uid, kind="Deployment", name=ref.name, owner=None)
        parent = OwnerRef(
            group="apps",
            kind="Deployment",
            name=names(deployment * PODS_PER_DEPLOYMENT)["deployment"],
            uid=owner_uid("Deployment", deployment),
        )
        return SlimOwner(uid=ref.uid, kind="ReplicaSet", name=ref.name, owner=parent)

    published: list[int] = [0]

    def emit(change: Change) -> None:
        published[0] += 1  # what the publisher would queue; it holds nothing once sent

    counters = Counters()
    catalog = Catalog("bench", IdentityTables(3600.0, emit))
    resolver = OwnerResolver(fetch, counters.stage("owners"))
    handler = PodHandler(catalog, resolver, LabelPolicy(), counters.stage("pods"), time.time)
    await handler.begin_list()
    for page in pages():
        for obj in page:
            await handler.listed(obj)
        del page[:]
    await handler.end_list()
    assert len(catalog.tables.pods) == PODS and published[0] == PODS, counters.totals()
    rss, peak = memory()  # while everything the watcher keeps is alive
    return {"records": PODS, "owners": len(resolver.cache), "rss": rss, "peak": peak}


def run_objects() -> dict[str, Any]:
    kept: list[dict[str, Any]] = []
    for page in pages():
        kept.extend(page)
    rss, peak = memory()
    json_bytes = sum(len(json.dumps(p)) for p in kept[:1000]) * (PODS // 1000)
    return {"records": len(kept), "json_mb": json_bytes / 1024 / 1024, "rss": rss, "peak": peak}


def variant(name: str) -> dict[str, Any]:
    import callmap.wire  # noqa: F401  (the floor: everything the watcher imports)
    import watch.kubewatch  # noqa: F401

    started = time.perf_counter()
    if name == "watcher":
        result = asyncio.run(run_watcher())
    elif name == "objects":
        result = run_objects()
    else:
        rss, peak = memory()
        result = {"records": 0, "rss": rss, "peak": peak}
    return result | {"variant": name, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["floor", "watcher", "objects"])
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(variant(args.variant)))
        return
    root = Path(__file__).resolve().parents[2]
    rows = []
    for name in ("floor", "watcher", "objects"):
        done = subprocess.run(
            [sys.executable, __file__, "--variant", name],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={"PYTHONPATH": str(root)},
        )
        rows.append(json.loads(done.stdout))
    table = Table(title=f"Memory for {PODS:,} pods (list pages of {PAGE}), one process each")
    for column in ("variant", "RSS MB", "peak RSS MB", "over floor MB", "bytes/pod", "seconds"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    floor = rows[0]["rss"]
    for row in rows:
        over = row["rss"] - floor
        per_pod = f"{over * 1024 * 1024 / PODS:,.0f}" if row["records"] else "-"
        table.add_row(
            row["variant"],
            f"{row['rss']:,.0f}",
            f"{row['peak']:,.0f}",
            f"{over:,.0f}",
            per_pod,
            f"{row['seconds']:.1f}",
        )
    console = Console()
    console.print(table)
    watcher = rows[1]
    verdict = "met" if watcher["rss"] < GOAL_MB else "MISSED"
    console.print(
        f"goal: watcher under {GOAL_MB:.0f} MB RSS: {verdict} ({watcher['rss']:.0f} MB); "
        f"{watcher['owners']:,} owners cached; keeping the objects takes "
        f"{rows[2]['rss'] / watcher['rss']:.0f}x the memory "
        f"(they are {rows[2]['json_mb']:,.0f} MB as JSON)"
    )


if __name__ == "__main__":
    main()
