"""Identities and edges of a few clusters, written by hand for the aggregator's tests."""

from __future__ import annotations

import time

from callmap.wire import (
    Edge,
    Endpoint,
    PodIdentity,
    ServiceIdentity,
    ServiceWorkload,
    WorkloadRef,
)
from streams.identity import IdentityStore


def pod(cluster: str, name: str, ip: str, workload: str, **fields: object) -> PodIdentity:
    return PodIdentity(
        cluster=cluster,
        uid=f"{cluster}-{name}",
        namespace="shop",
        name=name,
        ips=(ip,),
        workload=WorkloadRef(kind="Deployment", name=workload),
        created=0.0,
        **fields,  # type: ignore[arg-type]
    )


def service(
    cluster: str, name: str, ip: str, workloads: tuple[str, ...], exported: bool = False
) -> ServiceIdentity:
    return ServiceIdentity(
        cluster=cluster,
        namespace="shop",
        name=name,
        type="ClusterIP",
        cluster_ips=(ip,),
        workloads=tuple(
            ServiceWorkload(namespace="shop", kind="Deployment", name=w) for w in workloads
        ),
        created=0.0,
        exported=exported,
    )


def store(*records: PodIdentity | ServiceIdentity) -> IdentityStore:
    identities = IdentityStore()
    for record in records:
        if isinstance(record, PodIdentity):
            identities.put_pod(record.uid, record)
        else:
            identities.put_service(f"{record.namespace}/{record.name}", record)
    return identities


def workload(name: str, cluster: str | None = None, service: str | None = None) -> Endpoint:
    return Endpoint(
        type="workload",
        namespace="shop",
        name=name,
        kind="Deployment",
        service=service,
        cluster=cluster,
    )


def edge(
    cluster: str,
    client: Endpoint,
    server: Endpoint,
    *,
    edge_id: str = "e1",
    event: str = "new",
    last_seen: float | None = None,
    count: int = 1,
    ports: tuple[int, ...] = (8080,),
) -> Edge:
    return Edge(
        edge_id=edge_id,
        event=event,  # type: ignore[arg-type]
        cluster=cluster,
        client=client,
        server=server,
        ports=ports,
        sources=("socket-client",),
        first_seen=10.0,
        last_seen=time.time() if last_seen is None else last_seen,
        count=count,
    )
