"""Builders of the records the stream stages take: identities, DNS answers, sockets."""

from __future__ import annotations

from callmap.wire import (
    DnsAnswer,
    NodeIdentity,
    PodIdentity,
    ServiceIdentity,
    ServicePort,
    ServiceWorkload,
    SocketObservation,
    WorkloadRef,
)

CLUSTER = "c1"


def pod(
    name: str,
    ip: str,
    *,
    namespace: str = "shop",
    workload: str | None = None,
    kind: str = "Deployment",
    created: float | None = 0.0,
    deleted: float | None = None,
    host_network: bool = False,
    uid: str | None = None,
    node: str = "node-a",
    ips_since: float | None = None,
    subdomain: str | None = None,
    hostname: str | None = None,
    cluster: str = CLUSTER,
) -> PodIdentity:
    """A pod; with ``subdomain``, named ``<hostname or name>.<subdomain>`` as StatefulSets do."""
    return PodIdentity(
        cluster=cluster,
        uid=uid or f"uid-{namespace}-{name}",
        namespace=namespace,
        name=name,
        ips=(ip,),
        node=node,
        host_network=host_network,
        workload=WorkloadRef(kind=kind, name=workload or name.rsplit("-", 1)[0]),
        created=created,
        deleted=deleted,
        ips_since=ips_since,
        subdomain=subdomain,
        hostname=hostname or (name if subdomain else None),
    )


def service(
    name: str,
    ip: str | None,
    *workloads: str,
    namespace: str = "shop",
    type: str = "ClusterIP",
    external_name: str | None = None,
    created: float | None = None,
    workloads_since: float | None = None,
    node_port: int | None = None,
    cluster: str = CLUSTER,
) -> ServiceIdentity:
    return ServiceIdentity(
        cluster=cluster,
        namespace=namespace,
        name=name,
        type=type,  # type: ignore[arg-type]
        cluster_ips=(ip,) if ip else (),
        external_name=external_name,
        created=created,
        workloads_since=workloads_since,
        ports=() if node_port is None else (ServicePort(port=80, node_port=node_port),),
        workloads=tuple(
            ServiceWorkload(namespace=namespace, kind="Deployment", name=w) for w in workloads
        ),
    )


def node(name: str, ip: str) -> NodeIdentity:
    return NodeIdentity(cluster=CLUSTER, name=name, ips=(ip,))


def answer(
    qname: str,
    client_ip: str,
    *answers: str,
    ts: float = 100.0,
    ttl: int = 30,
    cnames: tuple[str, ...] = (),
    qtype: str = "A",
    count: int = 1,
    node: str = "node-a",
    cluster: str = CLUSTER,
) -> DnsAnswer:
    return DnsAnswer(
        cluster=cluster,
        node=node,
        ts=ts,
        client_ip=client_ip,
        server_ip="10.96.0.10",
        transport="udp",
        qname=qname,
        qtype=qtype,  # type: ignore[arg-type]
        answers=answers,
        cnames=cnames,
        ttl=ttl,
        count=count,
    )


def socket(
    local: str,
    local_port: int,
    remote: str,
    remote_port: int,
    role: str = "client",
    ts: float = 100.0,
    first_seen: float | None = None,
    pod_uid: str | None = None,
    dialled: tuple[str, int] | None = None,
    origin: str = "proc",
    transport: str = "tcp",
    cluster: str = CLUSTER,
) -> SocketObservation:
    """A socket; ``dialled`` is the address NAT replaced (``remote`` then answered)."""
    return SocketObservation(
        cluster=cluster,
        node="node-a",
        ts=ts,
        netns=1,
        pod_uid=pod_uid,
        local_ip=local,
        local_port=local_port,
        remote_ip=remote,
        remote_port=remote_port,
        role=role,
        first_seen=ts if first_seen is None else first_seen,  # type: ignore[arg-type]
        origin=origin,
        dialled_ip=None if dialled is None else dialled[0],
        dialled_port=None if dialled is None else dialled[1],
        transport=transport,  # type: ignore[arg-type]
    )
