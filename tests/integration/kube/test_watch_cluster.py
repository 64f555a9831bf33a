"""``callmap watch`` against a real API server, publishing to a real Kafka broker.

The API server runs alone, so the tests create what controllers would (a
Deployment's ReplicaSet, its pods, the EndpointSlices) and write pod status
as a kubelet would. Every test names its own cluster and namespace, and
checks what the compacted topics hold for that cluster (read from the start
and folded by key, as any consumer would) rather than single messages.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from identitytopics import eventually
from kubernetes_asyncio import client, config

from callmap.config import Settings
from callmap.devkube import KubeStatus
from callmap.wire import NodeIdentity, PodIdentity, ServiceIdentity, ServicePort
from callmap.wire import ServiceWorkload as Behind
from callmap.wire import WorkloadRef as Workload
from watch.identitytable import IdentityTables
from watch.kubewatch import KubeWatcher
from watch.options import KubeSource, WatchOptions

pytestmark = [pytest.mark.kube, pytest.mark.kafka]


# --- the cluster side -------------------------------------------------------------


@pytest.fixture
async def admin(kube_api: KubeStatus) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube_api.kubeconfig), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture
async def ns(admin: client.ApiClient) -> str:
    name = f"watch-{uuid.uuid4().hex[:8]}"
    await client.CoreV1Api(admin).create_namespace({"metadata": {"name": name}})
    return name


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


@pytest.fixture
async def cluster(admin: client.ApiClient, ns: str) -> Cluster:
    return Cluster(admin, ns)


# --- the watcher and what the topics hold ------------------------------------------------


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


# --- the tests ---------------------------------------------------------------------


async def test_pods_services_and_nodes_land_on_the_compacted_topics(
    kube_api: KubeStatus, settings: Settings, cluster: Cluster, ns: str
) -> None:
    web = await cluster.deployment("web")
    rs = await cluster.replica_set("web-7d9f", web)
    await cluster.pod("web-7d9f-a", ("10.1.0.10", "fd00::a"), owner=rs, labels={"app": "web"})
    await cluster.pod("web-7d9f-b", ("10.1.0.11",), owner=rs, labels={"app": "web"})
    cron = await cluster.batch.create_namespaced_cron_job(
        ns,
        {
            "metadata": {"name": "report"},
            "spec": {
                "schedule": "0 * * * *",
                "jobTemplate": {"spec": {"template": template({}, "Never")}},
            },
        },
    )
    job = await cluster.batch.create_namespaced_job(
        ns,
        {
            "metadata": {"name": "report-28711", "ownerReferences": [ref(cron)]},
            "spec": {"template": template({}, "Never")},
        },
    )
    await cluster.pod("report-28711-x", ("10.1.0.20",), owner=job)
    db = await cluster.apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": template({"app": "db"}),
            },
        },
    )
    await cluster.pod("db-0", ("10.1.0.30",), owner=db)
    agent = await cluster.apps.create_namespaced_daemon_set(
        ns,
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": template({"app": "agent"}),
            },
        },
    )
    await cluster.pod("agent-x", ("192.168.5.10",), owner=agent, host_network=True)
    await cluster.pod("toolbox", ("10.1.0.40",), annotations={"callmap.io/workload": "debugging"})
    await cluster.service("web", ipFamilyPolicy="SingleStack", selector={"app": "web"})
    await cluster.endpoints("web", [("web-7d9f-a", "10.1.0.10"), ("web-7d9f-b", "10.1.0.11")])
    await cluster.service("db", clusterIP="None", selector={"app": "db"})
    await cluster.endpoints("db", [("db-0", "10.1.0.30")])
    await cluster.service("edge", type="NodePort")
    await cluster.service("lb", type="LoadBalancer")
    await cluster.service("stripe", type="ExternalName", externalName="api.stripe.com", ports=[])
    node = f"node-{uuid.uuid4().hex[:6]}"
    await cluster.core.create_node({"metadata": {"name": node}})
    addresses = [
        {"type": "InternalIP", "address": "192.168.5.10"},
        {"type": "InternalIP", "address": "fd00:5::10"},
        {"type": "Hostname", "address": node},
    ]
    await cluster.core.patch_node_status(node, {"status": {"addresses": addresses}})

    watch_options = options(kube_api)
    async with running(settings, watch_options) as watcher:

        def complete(state: IdentityTables) -> None:
            assert len(pods_in(state, ns)) == 6 and len(services_in(state, ns)) == 5
            assert state.nodes.get(node) is not None

        state = await eventually(settings, watch_options.cluster, complete)

    pods = pods_in(state, ns)
    assert {name: pod.workload for name, pod in pods.items()} == {
        "web-7d9f-a": Workload(kind="Deployment", name="web"),
        "web-7d9f-b": Workload(kind="Deployment", name="web"),
        "report-28711-x": Workload(kind="CronJob", name="report"),
        "db-0": Workload(kind="StatefulSet", name="db"),
        "agent-x": Workload(kind="DaemonSet", name="agent"),
        "toolbox": Workload(kind="Pod", name="debugging"),  # a bare pod, renamed
    }
    web_a = pods["web-7d9f-a"]
    assert web_a.ips == ("10.1.0.10", "fd00::a") and web_a.node == "node-a"
    assert web_a.labels == {"app": "web"} and web_a.created is not None and web_a.deleted is None
    assert pods["agent-x"].host_network and pods["agent-x"].ips == ("192.168.5.10",)

    services = services_in(state, ns)
    assert {name: s.type for name, s in services.items()} == {
        "web": "ClusterIP",
        "db": "Headless",
        "edge": "NodePort",
        "lb": "LoadBalancer",
        "stripe": "ExternalName",
    }
    assert services["web"].workloads == (Behind(namespace=ns, kind="Deployment", name="web"),)
    assert services["web"].cluster_ips and services["db"].cluster_ips == ()
    assert services["web"].ports == (ServicePort(port=80, name="http", target_port="http"),)
    assert services["db"].workloads == (Behind(namespace=ns, kind="StatefulSet", name="db"),)
    edge_port = services["edge"].ports[0]
    assert edge_port.node_port is not None and 30000 <= edge_port.node_port <= 32767
    assert services["stripe"].external_name == "api.stripe.com"
    assert state.nodes.get(node) == NodeIdentity(
        cluster=watch_options.cluster, name=node, ips=("192.168.5.10", "fd00:5::10")
    )
    assert watcher.counters.totals()["owners"].seen >= 6  # RS, Deployment, Job, CronJob, ...


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
