"""The development cluster is a real one: nodes, controllers, CoreDNS, kube-proxy, IP reuse."""

from __future__ import annotations

import json
import time

import pytest
from helpers.clusterkit import run_pod

from devcluster.cluster import DevCluster
from devcluster.layout import DNS_SERVICE_IP

pytestmark = pytest.mark.cluster

# A pod's view of the network, printed as JSON: what it resolves, and who answers.
RESOLVE = """
import json, socket, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)})
    except OSError as e:
        out[name] = str(e)
print(json.dumps(out))
"""
# A new Service's rules reach kube-proxy a moment after its endpoints do: until then a
# connection is refused, and a client tries again, as on any cluster (for 15 s at most).
PING = """
import socket, sys, time
deadline = time.monotonic() + 15
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        break
    except ConnectionRefusedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
with s:
    s.sendall(b"ping probe\\n")
    print(s.makefile().readline().strip())
"""


def test_both_nodes_run_the_kubelet_built_here_on_debians_containerd(
    dev_cluster: DevCluster,
) -> None:
    nodes = json.loads(dev_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node-1", "node-2"]
    for node in nodes:
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == "v1.36.3"
        assert info["containerRuntimeVersion"].startswith("containerd://1.6")
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"


def test_controllers_not_the_test_make_replicasets_pods_and_endpointslices(
    dev_cluster: DevCluster,
) -> None:
    dev_cluster.kubectl("create", "namespace", "ctl")
    dev_cluster.kubectl(
        "-n", "ctl", "create", "deployment", "echo", "--replicas=2",
        f"--image={dev_cluster.status().images['pause']}",
    )  # fmt: skip
    dev_cluster.kubectl("-n", "ctl", "expose", "deployment", "echo", "--port=80")
    dev_cluster.kubectl("-n", "ctl", "rollout", "status", "deployment/echo", "--timeout=120s")
    sets = json.loads(dev_cluster.kubectl("-n", "ctl", "get", "replicasets", "-o", "json"))
    assert [s["metadata"]["ownerReferences"][0]["name"] for s in sets["items"]] == ["echo"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        slices = json.loads(dev_cluster.kubectl("-n", "ctl", "get", "endpointslices", "-o", "json"))
        addresses = [
            a for s in slices["items"] for e in s.get("endpoints") or [] for a in e["addresses"]
        ]
        if len(addresses) == 2:
            break
        time.sleep(0.5)
    assert len(addresses) == 2, slices
    pods = json.loads(dev_cluster.kubectl("-n", "ctl", "get", "pods", "-o", "json"))["items"]
    assert sorted(addresses) == sorted(p["status"]["podIP"] for p in pods)
    dev_cluster.kubectl("delete", "namespace", "ctl", "--wait=false")


def test_pods_resolve_through_coredns_cluster_names_and_the_internets(
    dev_cluster: DevCluster,
) -> None:
    dev_cluster.set_externals({"api.example.test": ["203.0.113.77"]}, {"api.example.test": [443]})
    names = ["kubernetes.default", "kube-dns.kube-system.svc.cluster.local", "api.example.test"]
    answers = json.loads(run_pod(dev_cluster, ["python", "-c", RESOLVE, *names], node="node-2"))
    assert answers["kubernetes.default"] == ["10.96.0.1"]  # through the search path
    assert answers["kube-dns.kube-system.svc.cluster.local"] == [DNS_SERVICE_IP]
    assert answers["api.example.test"] == ["203.0.113.77"]  # CoreDNS forwarded it upstream
    answer = run_pod(dev_cluster, ["python", "-c", PING, "api.example.test", "443"])
    assert answer.strip() == "pong external:api.example.test"


def test_a_service_ip_reaches_a_pod_on_the_other_node_through_kube_proxy(
    dev_cluster: DevCluster,
) -> None:
    server = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pong", "namespace": "default", "labels": {"app": "pong"}},
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "pong",
                    "image": dev_cluster.status().images["callmap"],
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", SERVE],
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "pong", "namespace": "default"},
        "spec": {"selector": {"app": "pong"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    dev_cluster.apply([server, service])
    dev_cluster.kubectl("wait", "--for=condition=Ready", "pod/pong", "--timeout=120s")
    answer = run_pod(dev_cluster, ["python", "-c", PING, "pong", "80"], node="node-2")
    assert answer.strip().startswith("pong from 10.200.2.")  # the caller's own pod address
    dev_cluster.kubectl("delete", "pod/pong", "service/pong", "--wait=false")


SERVE = """
import socket
server = socket.create_server(("", 8080))
while True:
    conn, peer = server.accept()
    with conn:
        conn.makefile().readline()
        conn.sendall(f"pong from {peer[0]}\\n".encode())
"""
