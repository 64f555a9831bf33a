"""``callmap watch`` against a real API server, publishing to a real Kafka broker.

The API server runs alone, so the tests create what controllers would (a
Deployment's ReplicaSet, its pods, the EndpointSlices) and write pod status
as a kubelet would. Every test names its own cluster and namespace, and
checks what the compacted topics hold for that cluster (read from the start
and folded by key, as any consumer would) rather than single messages.
"""

from __future__ import annotations

import uuid

import pytest
from helpers.identitytopics import eventually
from helpers.kubewatch import (
    Cluster,
    options,
    pods_in,
    ref,
    running,
    services_in,
    template,
)

from callmap.config import Settings
from callmap.wire import NodeIdentity, ServicePort
from callmap.wire import ServiceWorkload as Behind
from callmap.wire import WorkloadRef as Workload
from devtools.kube import KubeStatus
from watch.identitytable import IdentityTables

pytestmark = [pytest.mark.kube, pytest.mark.kafka]


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
