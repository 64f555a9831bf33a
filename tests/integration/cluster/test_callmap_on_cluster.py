"""callmap installed with its Helm chart maps real pods on real nodes.

Helm installs the chart as users do (only the image, the broker and the
SQLite volume differ: devcluster/install.py); then real pods call each other
through CoreDNS and kube-proxy, and their edges must reach the edges topic,
named by what the API server says of the pods (their workload via real
controllers' ownerReferences), found from their real cgroup paths.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callmap.broker import make_consumer
from callmap.config import load_settings
from callmap.wire import Edge
from callmap.wire.codec import decode_as
from callmap.wire.topics import EDGES
from devcluster.cluster import REPO, DevCluster
from devcluster.install import NAMESPACE
from devtools.helm import CHART, render

pytestmark = pytest.mark.cluster

# A client that calls its server by Service name, a short connection a second, and
# keeps one long-lived connection to the server pod's own address (seen by socket
# scans only): prints the time of its first successful call.
CLIENT = """
import socket, sys, time
first = None
long_lived = None
while True:
    try:
        with socket.create_connection(("server", 80), timeout=2) as s:
            s.sendall(b"ping\\n"); s.makefile().readline()
        if first is None:
            first = time.time(); print(f"first-call {first}", flush=True)
        if long_lived is None:
            long_lived = socket.create_connection((sys.argv[1], 8080), timeout=2)
    except OSError as e:
        print(f"error {e}", flush=True)
    time.sleep(1)
"""
SERVE = """
import socket, threading
server = socket.create_server(("", 8080))
def answer(conn):
    with conn:
        while conn.makefile().readline():
            conn.sendall(b"pong\\n")
while True:
    threading.Thread(target=answer, args=(server.accept()[0],), daemon=True).start()
"""


# Edges gain the sources and ports of later sightings at their next refresh.
FAST = {"streams": {"grace": 10, "refreshInterval": 10}}


@pytest.fixture(scope="module")
def installed(dev_cluster: DevCluster) -> Iterator[DevCluster]:
    report = dev_cluster.install_callmap(REPO, FAST)
    assert "STATUS: deployed" in report
    yield dev_cluster
    dev_cluster.kubectl("delete", "namespace", "calls", "--ignore-not-found", "--wait=true")
    dev_cluster.uninstall_callmap()


def deployment(name: str, image: str, command: list[str], node: str) -> dict[str, Any]:
    """A Deployment of one pod running ``command`` on ``node``, in namespace ``calls``.

    Its pods are killed at once when deleted: ``python`` as a container's first
    process ignores SIGTERM (the kernel drops signals without a handler for a
    namespace's init), so each deletion would wait out the default 30 s grace."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "calls"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": command,
                        }
                    ],
                },
            },
        },
    }


def test_every_component_runs_as_the_chart_says(installed: DevCluster) -> None:
    pods = json.loads(installed.kubectl("-n", NAMESPACE, "get", "pods", "-o", "json"))["items"]
    running = [p for p in pods if p["status"]["phase"] == "Running"]
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in running}
    assert {"capture", "watch", "streams", "sink-sqlite"} <= components
    captures = [
        p for p in running if p["metadata"]["labels"]["app.kubernetes.io/component"] == "capture"
    ]
    assert sorted(p["spec"]["nodeName"] for p in captures) == ["node-1", "node-2"]
    rendered = render(REPO / CHART, namespace=NAMESPACE)
    daemonset = next(o for o in rendered if o["kind"] == "DaemonSet")
    expected = daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    for pod in captures:
        assert pod["spec"]["containers"][0]["securityContext"] == expected
        assert pod["spec"]["hostNetwork"] is True and not pod["spec"].get("hostPID")


def test_the_watcher_has_no_admin_credentials(installed: DevCluster) -> None:
    accounts = json.loads(
        installed.kubectl("-n", NAMESPACE, "get", "serviceaccounts", "-o", "json")
    )
    watcher = next(
        a["metadata"]["name"] for a in accounts["items"] if "watch" in a["metadata"]["name"]
    )
    user = f"--as=system:serviceaccount:{NAMESPACE}:{watcher}"

    def can(*verb: str) -> str:
        return installed.kubectl("auth", "can-i", *verb, user, check=False).strip()

    assert can("list", "pods", "--all-namespaces") == "yes"
    assert can("watch", "endpointslices.discovery.k8s.io", "--all-namespaces") == "yes"
    assert can("get", "secrets", "--all-namespaces") == "no"
    assert can("create", "pods", "-n", "default") == "no"
    assert can("delete", "nodes") == "no"


def test_real_pods_calls_become_edges_named_by_their_workloads(installed: DevCluster) -> None:
    image = installed.status().images["callmap"]
    installed.kubectl("create", "namespace", "calls")
    installed.apply([deployment("server", image, ["python", "-c", SERVE], "node-1")])
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "server", "namespace": "calls"},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    installed.apply([service])
    installed.kubectl("-n", "calls", "rollout", "status", "deployment/server", "--timeout=120s")
    server_ip = installed.kubectl(
        "-n", "calls", "get", "pods", "-l", "app=server", "-o", "jsonpath={.items[0].status.podIP}"
    )
    client = deployment("client", image, ["python", "-c", CLIENT, server_ip], "node-2")
    installed.apply([client])
    installed.kubectl("-n", "calls", "rollout", "status", "deployment/client", "--timeout=120s")

    arrivals: dict[str, float] = {}
    edges = asyncio.run(
        read_edges(installed, arrivals, until=lambda e: len(seen(e)) == 2, timeout=180)
    )
    found = seen(edges)
    assert set(found) == {"dns", "sockets"}, [
        f"{e.client} -> {e.server} {e.sources}" for e in edges.values()
    ]
    # The socket scans found both ends, by the pods' real cgroup paths and /proc.
    assert 8080 in found["sockets"].ports
    first_call = first_call_time(installed)
    new = arrivals[found["dns"].edge_id] - first_call
    print(f"\nthe edge was on the edges topic {new:.2f}s after the client's first call")
    assert -5 < found["dns"].first_seen - first_call < new


# One call to a Service's cluster IP, as short as a call gets, then idle: prints
# which pod answered (the server's own word).
ONE_CALL = """
import socket, sys, time
while True:
    try:
        with socket.create_connection((sys.argv[1], 80), timeout=2) as s:
            s.sendall(b"ping\\n"); answer = s.makefile().readline().strip()
        print(f"answered-by {answer}", flush=True)
        break
    except OSError as e:
        print(f"error {e}", flush=True); time.sleep(1)
time.sleep(3600)
"""
SAY_WHO = SERVE.replace('b"pong\\n"', 'f"{socket.gethostname()}\\n".encode()')


def test_a_short_call_to_a_service_is_an_edge_to_the_backend_that_answered(
    installed: DevCluster,
) -> None:
    """kube-proxy picks one of two workloads behind a Service; the node's connection
    tracking, read by the agent with the chart's grants, names the one that answered."""
    image = installed.status().images["callmap"]
    installed.kubectl("create", "namespace", "short")
    backends = [
        backend(f"reviews-{v}", image, ["python", "-c", SAY_WHO], node)
        for v, node in (("v1", "node-1"), ("v2", "node-2"))
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "short"},
        "spec": {"selector": {"group": "reviews"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    try:
        installed.apply([*backends, service])
        for name in ("reviews-v1", "reviews-v2"):
            installed.kubectl(
                "-n", "short", "rollout", "status", f"deployment/{name}", "--timeout=120s"
            )
        cluster_ip = installed.kubectl(
            "-n", "short", "get", "service", "reviews", "-o", "jsonpath={.spec.clusterIP}"
        )
        prober = backend("prober", image, ["python", "-c", ONE_CALL, cluster_ip], "node-2")
        installed.apply([prober])
        installed.kubectl("-n", "short", "rollout", "status", "deployment/prober", "--timeout=120s")
        answered = _answered_by(installed)
        workload = answered.rsplit("-", 2)[0]  # a Deployment's pod: <name>-<hash>-<id>
        assert workload in {"reviews-v1", "reviews-v2"}, answered

        def to_reviews(edges: dict[str, Edge]) -> dict[str, Edge]:
            return {
                e.server.name or "": e
                for e in edges.values()
                if e.client.name == "prober" and e.server.namespace == "short"
            }

        def named(edges: dict[str, Edge]) -> bool:
            """The edge is there with its Service's name: the node that translated the
            call knows it; the backend's node, whose record may come first, does not
            (the name joins the edge at its next refresh)."""
            edge = to_reviews(edges).get(workload)
            return edge is not None and edge.server.service == "reviews"

        found = to_reviews(asyncio.run(read_edges(installed, {}, named, timeout=120)))
        assert set(found) == {workload}, found  # not the workload that never answered
        assert found[workload].server.service == "reviews"
        assert found[workload].ports == (8080,)
    finally:
        installed.kubectl("delete", "namespace", "short", "--ignore-not-found", "--wait=true")


def backend(name: str, image: str, command: list[str], node: str) -> dict[str, Any]:
    """A Deployment in namespace ``short``, its pods labelled ``group: reviews`` too."""
    spec = deployment(name, image, command, node)
    spec["metadata"]["namespace"] = "short"
    spec["spec"]["template"]["metadata"]["labels"] = {"app": name, "group": "reviews"}
    return spec


def _answered_by(cluster: DevCluster, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = cluster.kubectl("-n", "short", "logs", "deployment/prober")
        for line in logs.splitlines():
            if line.startswith("answered-by "):
                return line.split()[1]
        time.sleep(1)
    raise AssertionError(f"the prober's call was not answered: {logs}")


def seen(edges: dict[str, Edge]) -> dict[str, Edge]:
    """The calls/client -> calls/server edges: one found from DNS, one by both sides' sockets."""
    found = {}
    for edge in edges.values():
        client, server = edge.client, edge.server
        if (client.namespace, client.name, server.namespace, server.name) != (
            "calls", "client", "calls", "server",
        ):  # fmt: skip
            continue
        if "dns" in edge.sources:
            found["dns"] = edge
        if {"socket-client", "socket-server"} <= set(edge.sources):
            found["sockets"] = edge
    return found


def first_call_time(cluster: DevCluster) -> float:
    logs = cluster.kubectl("-n", "calls", "logs", "deployment/client")
    return float(
        next(line.split()[1] for line in logs.splitlines() if line.startswith("first-call"))
    )


async def read_edges(
    cluster: DevCluster, arrivals: dict[str, float], until: Any, timeout: float
) -> dict[str, Edge]:
    """The edges topic from its start, until ``until(edges)`` holds or ``timeout`` passes;
    ``arrivals`` gets the time each edge's first message was produced (its Kafka timestamp)."""
    settings = load_settings({"CALLMAP_KAFKA_BOOTSTRAP": cluster.status().kafka_bootstrap})
    consumer = make_consumer(settings.kafka, EDGES.name, auto_offset_reset="earliest")
    await consumer.start()
    edges: dict[str, Edge] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(edges):
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    edge = decode_as(Edge, message.value, topic=EDGES.name)
                    edges[edge.edge_id] = edge
                    arrivals.setdefault(edge.edge_id, message.timestamp / 1000)
    finally:
        await consumer.stop()
    return edges


# What a process made from the agent's pod template reaches: a packet socket, the
# network namespaces the socket scan sees, and other pods' environment. With
# DROP, it first gives root up as the agent does (capture.privileges, the
# chart's ids) once its packet socket is open.
REACH = """
import os, socket, sys
try:
    packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    print("packet socket: opened")
except PermissionError:
    print("packet socket: denied")
if sys.argv[1] == "drop":
    from capture.privileges import drop_to
    drop_to(10002, 10002)
    print(f"switched to {os.getresuid()}")
from capture.procscan import scan_proc
scan = scan_proc("/host/proc")
print(f"namespaces with a pod: {sum(ns.pod_uid is not None for ns in scan.namespaces)}")
own = open("/proc/self/cgroup").read()
read = denied = 0
for pid in (p for p in os.listdir("/host/proc") if p.isdigit()):
    try:
        cgroup = open(f"/host/proc/{pid}/cgroup").read()
        if "pod" not in cgroup or cgroup == own:
            continue
        open(f"/host/proc/{pid}/environ", "rb").read()
        read += 1
    except PermissionError:
        denied += 1
    except OSError:
        pass
print(f"other pods environ: {read} read, {denied} denied")
"""


def reach(output: str) -> dict[str, int]:
    """What the REACH script printed: pod namespaces, other pods' environ read, denied."""
    pods = re.search(r"namespaces with a pod: (\d+)", output)
    environ = re.search(r"other pods environ: (\d+) read, (\d+) denied", output)
    assert pods is not None and environ is not None, output
    return {"pods": int(pods[1]), "read": int(environ[1]), "denied": int(environ[2])}


def agent_process_status(cluster: DevCluster) -> str:
    """The running agent's /proc status, read from this host (the nodes share its kernel)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        # The agent, not the container's init (tini), which starts it and only forwards
        # signals and reaps.
        agent = not words[0].endswith(b"tini")
        if agent and b"capture" in words and b"run" in words and b"--drop-to" in words:
            return (cmdline.parent / "status").read_text()
    raise AssertionError("no capture agent process with --drop-to on this machine")


def agent_pod(cluster: DevCluster, name: str, add: list[str], user: int, script: str) -> str:
    """Run ``script`` (sh) in a pod made from the capture DaemonSet's own pod template,
    with the capabilities ``add`` and user ``user`` instead of the chart's; its output."""
    daemonset = json.loads(
        cluster.kubectl(
            "-n",
            NAMESPACE,
            "get",
            "daemonset",
            "-l",
            "app.kubernetes.io/component=capture",
            "-o",
            "json",
        )
    )["items"][0]
    spec = daemonset["spec"]["template"]["spec"]
    container = spec["containers"][0]
    for key in ("livenessProbe", "readinessProbe", "startupProbe", "ports", "args"):
        container.pop(key, None)
    container["command"] = ["sh", "-c", script]
    container["securityContext"]["capabilities"]["add"] = add
    container["securityContext"]["runAsUser"] = user
    container["securityContext"]["runAsNonRoot"] = user != 0
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {**spec, "restartPolicy": "Never", "nodeName": "node-1"},
    }
    cluster.apply([pod])
    cluster.kubectl(
        "-n", NAMESPACE, "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}",
        "--timeout=120s",
    )  # fmt: skip
    output = cluster.kubectl("-n", NAMESPACE, "logs", name)
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", name, "--wait=false")
    return output


def test_the_agents_grants_are_needed_and_do_not_reach_other_pods_environment(
    installed: DevCluster,
) -> None:
    status = agent_process_status(installed)
    assert re.search(r"^Uid:\t10002\t10002\t10002\t10002$", status, re.M), status
    assert re.search(r"^CapEff:\t0+$", status, re.M) and re.search(r"^CapPrm:\t0+$", status, re.M)
    chart = ["NET_RAW", "SETUID", "SETGID"]
    script = f"python -c '{REACH}'"
    switched = agent_pod(installed, "grants-chart", chart, 0, f"{script} drop")
    assert "packet socket: opened" in switched and "switched to (10002, 10002, 10002)" in switched
    found = reach(switched)
    assert found["pods"] >= 2, switched  # the socket scan sees the pods (streams, sink...)
    assert (found["read"], found["denied"] > 0) == (0, True), switched
    # SYS_PTRACE, which the chart does not grant, would open other pods' environment.
    ptrace = agent_pod(installed, "grants-ptrace", [*chart, "SYS_PTRACE"], 0, f"{script} stay")
    assert reach(ptrace)["read"] > 0, ptrace
    # Without NET_RAW no packet socket; and a non-root user gets none of the added grants.
    assert "packet socket: denied" in agent_pod(installed, "grants-no-raw", [], 0, f"{script} stay")
    non_root = agent_pod(installed, "grants-non-root", chart, 10001, f"{script} stay")
    assert "packet socket: denied" in non_root


# A long-lived connection to the server pod's own address, a line each way every second.
PINGER = """
import socket, sys, time
while True:
    try:
        conn = socket.create_connection((sys.argv[1], 8080), timeout=5)
        lines = conn.makefile()
        while True:
            conn.sendall(b"ping\\n"); lines.readline(); time.sleep(1)
    except OSError as e:
        print(f"error {e}", flush=True); time.sleep(1)
"""


def test_with_tcp_info_a_real_pods_calls_carry_their_round_trip_times(
    installed: DevCluster,
) -> None:
    """capture.tcpInfo on real nodes: the agent, with the chart's grants for it, enters
    a containerd pod's namespace through the host's /proc and reads its client socket."""
    image = installed.status().images["callmap"]
    installed.install_callmap(REPO, {**FAST, "capture": {"dropTo": None, "tcpInfo": True}})
    try:
        installed.kubectl("create", "namespace", "rtt")
        server = deployment("server", image, ["python", "-c", SERVE], "node-1")
        server["metadata"]["namespace"] = "rtt"
        installed.apply([server])
        installed.kubectl("-n", "rtt", "rollout", "status", "deployment/server", "--timeout=120s")
        server_ip = installed.kubectl(
            "-n",
            "rtt",
            "get",
            "pods",
            "-l",
            "app=server",
            "-o",
            "jsonpath={.items[0].status.podIP}",
        )
        client = deployment("client", image, ["python", "-c", PINGER, server_ip], "node-2")
        client["metadata"]["namespace"] = "rtt"
        installed.apply([client])

        def timed(edges: dict[str, Edge]) -> Edge | None:
            for edge in edges.values():
                names = (edge.client.namespace, edge.client.name, edge.server.name)
                total = edge.health_total
                if names == ("rtt", "client", "server") and total and total.rtt:
                    return edge
            return None

        edge = timed(asyncio.run(read_edges(installed, {}, timed, timeout=180)))
        assert edge is not None and edge.health_total is not None, "no RTT reached the topic"
        rtt = edge.health_total.rtt
        assert rtt is not None and rtt.samples >= 1
        # Two network namespaces of this machine, a veth and a bridge apart.
        assert 1 <= rtt.quantile_us(0.5) < 100_000, rtt
        print(f"\nRTT of rtt/client -> rtt/server: p50 {rtt.quantile_us(0.5):.0f} µs")
    finally:
        installed.kubectl("delete", "namespace", "rtt", "--ignore-not-found", "--wait=true")
        installed.install_callmap(REPO, FAST)  # the chart's defaults again
