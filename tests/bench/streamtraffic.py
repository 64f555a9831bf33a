"""The stream benches' traffic: pods, services, and their calls as DNS answers or sockets.

2,000 clients on 20 nodes each call 5 of 1,000 services, once per one-second
window, window after window; ``bench_streams.py`` sends it through a worker,
``bench_stages.py`` through the stages alone.
"""

from __future__ import annotations

import itertools

from callmap.wire import (
    DnsAnswer,
    PodIdentity,
    ServiceIdentity,
    ServiceWorkload,
    SocketObservation,
    WorkloadRef,
)

THROUGHPUT_RECORDS = 300_000
CLIENTS, SERVED, CALLS_PER_CLIENT, NODES = 2_000, 1_000, 5, 20
BATCH = CLIENTS * CALLS_PER_CLIENT // NODES  # one node's calls of one window


def pod(cluster: str, n: int, workloads: int = 5000) -> PodIdentity:
    return PodIdentity(
        cluster=cluster,
        uid=f"{cluster}-pod-{n}",
        namespace=f"ns{n % 50}",
        name=f"app{n}-0",
        ips=(f"10.{100 + n // 65536}.{(n // 256) % 256}.{n % 256}",),
        node=f"node-{n % 20}",
        workload=WorkloadRef(kind="Deployment", name=f"app{n % workloads}"),
        labels={"app": f"app{n % workloads}", "pod-template-hash": "5d9f8c7b6"},
        created=0.0,
    )


def service(cluster: str, n: int) -> ServiceIdentity:
    return ServiceIdentity(
        cluster=cluster,
        namespace=f"ns{n % 50}",
        name=f"svc{n}",
        type="ClusterIP",
        cluster_ips=(f"10.96.{n // 256}.{n % 256}",),
        workloads=(ServiceWorkload(namespace=f"ns{n % 50}", kind="Deployment", name=f"app{n}"),),
    )


def answer(cluster: str, client: int, svc: int, ts: float) -> DnsAnswer:
    return DnsAnswer(
        cluster=cluster,
        node=f"node-{client % NODES}",
        ts=ts,
        client_ip=f"10.{100 + client // 65536}.{(client // 256) % 256}.{client % 256}",
        server_ip="10.96.0.10",
        transport="udp",
        qname=f"svc{svc}.ns{svc % 50}.svc.cluster.local",
        qtype="A",
        answers=(f"10.96.{svc // 256}.{svc % 256}",),
        ttl=30,
    )


def steady_answers(cluster: str, total: int, start: float) -> list[DnsAnswer]:
    """``total`` answers: every call once per one-second window, window after window."""
    calls = [
        (client, (client * 7 + n) % SERVED)
        for client in range(CLIENTS)
        for n in range(CALLS_PER_CLIENT)
    ]
    return [
        answer(cluster, client, svc, start + n // len(calls))
        for n, (client, svc) in zip(range(total), itertools.cycle(calls), strict=False)
    ]


def steady_connections(cluster: str, total: int, start: float) -> list[SocketObservation]:
    """The same calls as connections to the services' cluster IPs, reported window after window."""
    calls = [
        (client, (client * 7 + n) % SERVED)
        for client in range(CLIENTS)
        for n in range(CALLS_PER_CLIENT)
    ]
    return [
        SocketObservation(
            cluster=cluster,
            node=f"node-{client % NODES}",
            ts=start + n // len(calls),
            netns=4026531840 + client,
            pod_uid=f"{cluster}-pod-{client}",
            local_ip=f"10.{100 + client // 65536}.{(client // 256) % 256}.{client % 256}",
            local_port=40000 + svc,
            remote_ip=f"10.96.{svc // 256}.{svc % 256}",
            remote_port=80,
            role="client",
            first_seen=start,
        )
        for n, (client, svc) in zip(range(total), itertools.cycle(calls), strict=False)
    ]
