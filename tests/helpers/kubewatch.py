"""Playing a cluster's controllers and kubelets against a bare API server, and
reading what ``callmap watch`` made of it, for the watcher's tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, config

from callmap.config import Settings
from callmap.inventory import Inventory, load_inventory
from callmap.wire import PodIdentity, ServiceIdentity
from devtools.kube import KubeStatus
from watch.identitytable import IdentityTables
from watch.kubewatch import KubeWatcher
from watch.options import KubeSource, WatchOptions


def ref(obj: Any) -> dict[str, Any]:
    """An ownerReference to ``obj``, as a controller would write it."""
    return {
        "apiVersion": obj.api_version,
        "kind": obj.kind,
        "name": obj.metadata.name,
        "uid": obj.metadata.uid,
        "controller": True,
    }


def template(labels: dict[str, str], restart: str = "Always") -> dict[str, Any]:
    containers = [{"name": "app", "image": "registry.example/app:1"}]
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": containers, "restartPolicy": restart},
    }


class Cluster:
    """Plays the controllers and kubelets of one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)

    async def deployment(self, name: str) -> Any:
        labels = {"app": name}
        body = {
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels}, "template": template(labels)},
        }
        return await self.apps.create_namespaced_deployment(self.ns, body)

    async def replica_set(self, name: str, owner: Any) -> Any:
        labels = {"app": owner.metadata.name}
        body = {
            "metadata": {"name": name, "ownerReferences": [ref(owner)]},
            "spec": {"selector": {"matchLabels": labels}, "template": template(labels)},
        }
        return await self.apps.create_namespaced_replica_set(self.ns, body)

    async def pod(
        self,
        name: str,
        ips: tuple[str, ...] = (),
        *,
        owner: Any = None,
        owner_ref: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        host_network: bool = False,
        phase: str = "Running",
    ) -> Any:
        metadata: dict[str, Any] = {"name": name, "labels": labels or {"app": name.split("-")[0]}}
        if owner is not None or owner_ref is not None:
            metadata["ownerReferences"] = [owner_ref or ref(owner)]
        if annotations:
            metadata["annotations"] = annotations
        spec = template({})["spec"] | {"nodeName": "node-a", "hostNetwork": host_network}
        created = await self.core.create_namespaced_pod(
            self.ns, {"metadata": metadata, "spec": spec}
        )
        if ips:
            await self.status(name, ips, phase)
        return created

    async def status(self, name: str, ips: tuple[str, ...], phase: str = "Running") -> None:
        status = {"phase": phase, "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}
        await self.core.patch_namespaced_pod_status(name, self.ns, {"status": status})

    async def service(self, name: str, **spec: Any) -> Any:
        spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": "http"}])
        return await self.core.create_namespaced_service(
            self.ns, {"metadata": {"name": name}, "spec": spec}
        )

    async def endpoints(self, service: str, pods: list[tuple[str, str]]) -> Any:
        endpoints = [
            {
                "addresses": [ip],
                "conditions": {"ready": index == 0},  # the second one is not ready: still behind
                "targetRef": {"kind": "Pod", "name": pod, "namespace": self.ns},
            }
            for index, (pod, ip) in enumerate(pods)
        ]
        body = {
            "metadata": {
                "name": f"{service}-{uuid.uuid4().hex[:5]}",
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
        }
        return await self.discovery.create_namespaced_endpoint_slice(self.ns, body)


@asynccontextmanager
async def admin_client(kube_api: KubeStatus) -> AsyncIterator[client.ApiClient]:
    """A client authenticated as the kubeconfig's admin (client certificate, system:masters)."""
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube_api.kubeconfig), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        yield api


def kubeconfig_via(kube_api: KubeStatus, port: int, target: Path) -> Path:
    """The admin kubeconfig, pointed at ``127.0.0.1:port`` (a relay in front of the server)."""
    kubeconfig = yaml.safe_load(kube_api.kubeconfig.read_text())
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    target.write_text(yaml.safe_dump(kubeconfig))
    return target


def options(kube_api: KubeStatus, **changes: Any) -> WatchOptions:
    values: dict[str, Any] = {
        "cluster": f"test-{uuid.uuid4().hex[:8]}",
        "source": KubeSource(kubeconfig=str(kube_api.kubeconfig)),
        "lease": None,
        "sweep_interval": 0.2,
    }
    return WatchOptions(**(values | changes))


@asynccontextmanager
async def running(settings: Settings, watch_options: WatchOptions) -> AsyncIterator[KubeWatcher]:
    """A watcher running in this event loop, ready (first lists done) when yielded."""
    watcher = KubeWatcher(settings, watch_options)
    task = asyncio.create_task(watcher.run(), name="test-watcher")
    ready = asyncio.create_task(watcher.ready.wait())
    try:
        await asyncio.wait([task, ready], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped it
        assert watcher.ready.is_set(), "the watcher did not get ready in time"
        yield watcher
    finally:
        ready.cancel()
        task.cancel()
        await asyncio.gather(task, ready, return_exceptions=True)


def pods_in(state: IdentityTables, ns: str) -> dict[str, PodIdentity]:
    return {r.name: r for _, r in state.pods.items() if r.namespace == ns}


def services_in(state: IdentityTables, ns: str) -> dict[str, ServiceIdentity]:
    return {r.name: r for _, r in state.services.items() if r.namespace == ns}


def pod_named(state: IdentityTables, ns: str, name: str) -> PodIdentity:
    pods = pods_in(state, ns)
    assert name in pods, f"no record of pod {ns}/{name} (yet)"
    return pods[name]


def service_named(state: IdentityTables, ns: str, name: str) -> ServiceIdentity:
    services = services_in(state, ns)
    assert name in services, f"no record of service {ns}/{name} (yet)"
    return services[name]


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def token_kubeconfig(
    admin: client.ApiClient, kube_api: KubeStatus, namespace: str, account: str, tmp_path: Path
) -> KubeSource:
    """A kubeconfig that authenticates as ``account`` with a token from the TokenRequest API."""
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    issued = await client.CoreV1Api(admin).create_namespaced_service_account_token(
        account, namespace, request
    )
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "dev",
                "cluster": {
                    "server": kube_api.server,
                    "certificate-authority": str(kube_api.ca_file),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": issued.status.token}}],
        "contexts": [{"name": account, "context": {"cluster": "dev", "user": account}}],
        "current-context": account,
    }
    path = tmp_path / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return KubeSource(kubeconfig=str(path))


def dump_inventory_file(kube_api: KubeStatus, target: Path, cluster: str) -> Inventory:
    """Run ``watch --dump-inventory`` against the test API server; the file it wrote."""
    command = [sys.executable, "-m", "watch", "--dump-inventory", str(target)]
    command += ["--kubeconfig", str(kube_api.kubeconfig), "--cluster", cluster]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return load_inventory(target.read_text())


@dataclass(frozen=True)
class LeaseTimes:
    """A short Lease for tests: taken over within seconds of its holder's end."""

    duration: float = 3
    renew_deadline: float = 2
    retry: float = 0.3


LEASE = LeaseTimes()


def start_watcher(
    identity: str,
    *,
    kubeconfig: Path,
    settings: Settings,
    cluster_name: str,
    lease: str,
    namespace: str,
    log: Path,
    times: LeaseTimes = LEASE,
) -> subprocess.Popen[bytes]:
    """A ``callmap watch`` process that competes for the Lease ``namespace/lease``."""
    command = [sys.executable, "-m", "watch", "--kubeconfig", str(kubeconfig)]
    command += ["--cluster", cluster_name, "--identity", identity, "--metrics-port", "0"]
    command += ["--lease-name", lease, "--lease-namespace", namespace]
    command += ["--lease-duration", f"{times.duration:g}", "--retry-period", f"{times.retry:g}"]
    command += ["--renew-deadline", f"{times.renew_deadline:g}"]
    env = os.environ | {
        "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "CALLMAP_TOPIC_REPLICATION": "1",
        "CALLMAP_TOPIC_PARTITIONS": "3",
    }
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


async def holder(coordination: client.CoordinationV1Api, lease: str, namespace: str) -> str | None:
    try:
        found = await coordination.read_namespaced_lease(lease, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found.spec.holder_identity or None


async def wait_for_holder(
    coordination: client.CoordinationV1Api, lease: str, namespace: str, wanted: str | None
) -> float:
    """Seconds until the Lease names ``wanted`` (None: released)."""
    started = time.monotonic()
    while (current := await holder(coordination, lease, namespace)) != wanted:
        assert time.monotonic() - started < 30, f"the Lease still names {current!r}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started
