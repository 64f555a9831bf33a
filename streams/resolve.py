"""From raw capture events to sightings of edges: who called whom. Pure.

:class:`Resolver` answers, for a ``DnsAnswer`` or a ``SocketObservation``,
which client endpoint called which server endpoints, resolving IPs against
the time-versioned :class:`~streams.identity.IdentityStore` at the event's own
time (DESIGN.md, points 3 and 4):

- DNS: the client is whoever held ``client_ip``; the server comes from the
  name and its CNAME chain: the first that names a known service (the
  workloads behind it at the answer's time), a headless per-pod name, a
  ``*.pod`` name or the API server; else the first name outside the cluster
  domain (the name a search path or autopath was applied to), an external;
- sockets, client side: the local pod is the one capture named by UID (an
  unknown UID waits for its pod), else the local IP's holder; the remote IP is
  a pod, a service's cluster IP (the workloads behind it then), a node (or
  the service that owns a node port called on it), or an address this client
  got in a DNS answer within its TTL (the same external endpoint that answer
  named); only then a raw ``ip``. When the node's connection tracking saw
  the call's NAT (``dialled_ip``: a Service's address the client dialled,
  ``remote_ip`` the pod that answered), the server is the one workload
  behind that Service the answering pod belongs to;
- sockets, server side: exactly the remote pod calling the local pod; a
  sidecar's inbound port (Istio's 15006) is no port of the edge.

When an identity is missing the event is *late*: the caller retries it after
a grace period with ``final=True``, when raw ``ip`` (or ``service``) endpoints
stand in for what is still unknown. Nothing is dropped silently: every
outcome is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from callmap.counters import StageCounters
from callmap.wire import DnsAnswer, Endpoint, PodIdentity, ServiceIdentity, SocketObservation
from callmap.wire.records import EdgeSource
from streams.dnsmemory import DnsMemory
from streams.dnsnames import (
    ApiServerName,
    ClusterName,
    ExternalName,
    HeadlessPodName,
    PodIpName,
    ServiceName,
    classify,
)
from streams.identity import Holding, IdentityStore, WorkloadsVersion

APISERVER = Endpoint(type="apiserver")
SIDECAR_INBOUND_PORTS = frozenset({15006})
"""Ports a sidecar proxy redirects inbound connections to (Istio's 15006): not the server's port."""


@dataclass(frozen=True, slots=True)
class Sight:
    """One sighting of client calling server (on ``port``, when known)."""

    client: Endpoint
    server: Endpoint
    port: int | None
    source: EdgeSource
    ts: float


class Late(Exception):
    """An identity the event needs has not arrived (yet)."""


def workload_of(pod: PodIdentity, service: str | None = None) -> Endpoint:
    return Endpoint(
        type="workload",
        namespace=pod.namespace,
        name=pod.workload.name,
        kind=pod.workload.kind,
        service=service,
    )


class Resolver:
    """Resolves raw events against an identity store; see the module docstring."""

    def __init__(
        self,
        store: IdentityStore,
        counters: StageCounters,
        *,
        cluster_domain: str = "cluster.local",
        excluded_namespaces: frozenset[str] = frozenset(),
        memory: DnsMemory | None = None,
        sidecar_inbound_ports: frozenset[int] = SIDECAR_INBOUND_PORTS,
    ) -> None:
        self.store = store
        self.counters = counters
        self.domain = cluster_domain
        self.excluded = excluded_namespaces
        self.memory = memory or DnsMemory()
        self.sidecar_inbound_ports = sidecar_inbound_ports
        self.fallbacks = 0
        """How many times an unknown identity was replaced by a raw endpoint."""
        self.consulted: list[tuple[str, WorkloadsVersion]] = []
        """Services with several workload versions that resolutions read, and the version
        each read: a route made from them holds only while those versions do."""

    # --- events ----------------------------------------------------------------

    def dns(self, answer: DnsAnswer, *, final: bool = False) -> list[Sight]:
        """Sightings of one DNS answer; raises :class:`Late` unless ``final``."""
        servers = self._servers_by_name(answer, final)
        holding = self.store.holder(answer.client_ip, answer.ts)
        for server in servers:  # before the client may turn out late: sockets need it now
            if server.type == "external" and server.dns_name:
                self.remember(holding, answer, server.dns_name)
        client = self._client(answer.client_ip, answer.ts, final)
        return self._keep([Sight(client, s, None, "dns", answer.ts) for s in servers])

    def socket(self, obs: SocketObservation, *, final: bool = False) -> list[Sight]:
        """Sightings of one socket observation; raises :class:`Late` unless ``final``."""
        if obs.role == "server":
            client = self._client(obs.remote_ip, obs.first_seen, final)
            server = self._local(obs, final)
            port = self.server_port(obs)
            return self._keep([Sight(client, server, port, "socket-server", obs.ts)])
        client = self._local(obs, final)
        servers = self._servers_by_ip(obs, final)
        return self._keep(
            [Sight(client, s, obs.remote_port, "socket-client", obs.ts) for s in servers]
        )

    def server_port(self, obs: SocketObservation) -> int | None:
        """The port a server-side observation proves: none for a sidecar's redirect port."""
        return None if obs.local_port in self.sidecar_inbound_ports else obs.local_port

    def remember(self, holding: Holding | None, answer: DnsAnswer, name: str) -> None:
        """Remember that ``answer``'s client (``holding``, if known) was told ``name``."""
        self.memory.remember(_memory_key(holding, answer.client_ip), answer, name)

    def _keep(self, sights: list[Sight]) -> list[Sight]:
        if not self.excluded:
            return sights
        kept = [
            s
            for s in sights
            if s.client.namespace not in self.excluded and s.server.namespace not in self.excluded
        ]
        if len(kept) < len(sights):
            self.counters.drop("excluded_namespace", len(sights) - len(kept))
        return kept

    # --- endpoints ---------------------------------------------------------------

    def _client(self, ip: str, ts: float, final: bool) -> Endpoint:
        holder = self.store.holder(ip, ts)
        if holder is not None and holder.kind != "service":
            return self._endpoint(holder, ip)
        return self._stand_in(ip, final)

    def _stand_in(self, ip: str, final: bool) -> Endpoint:
        if not final:
            raise Late(ip)
        self.fallbacks += 1
        return Endpoint(type="ip", ip=ip)

    def _local(self, obs: SocketObservation, final: bool) -> Endpoint:
        """The local side of a socket: its pod by UID when capture knew it, else by IP.

        A UID the store does not know yet is waited for: the IP's holder may be
        another pod (a reused address), so it is never asked instead.
        """
        if obs.pod_uid is not None:
            pod = self.store.pod(obs.pod_uid)
            if pod is not None:
                return workload_of(pod)
            return self._stand_in(obs.local_ip, final)
        return self._client(obs.local_ip, obs.first_seen, final)

    def _endpoint(self, holder: Holding, ip: str) -> Endpoint:
        if holder.kind == "pod":
            return workload_of(self.store.pods[holder.key])
        return Endpoint(type="node", name=holder.key, ip=ip)

    def _servers_by_ip(self, obs: SocketObservation, final: bool) -> list[Endpoint]:
        ip = obs.remote_ip
        holder = self.store.holder(ip, obs.first_seen)
        if obs.dialled_ip is not None and (via := self._dialled_service(obs)) is not None:
            return self._backend(self._behind(via, obs.first_seen), holder)
        if holder is not None:
            if holder.kind == "service":
                return self._behind(holder.key, obs.first_seen)
            if holder.kind == "node":  # a node port is its service's, on every node
                service = self.store.by_node_port.get(obs.remote_port)
                if service is not None:
                    return self._behind(service, obs.first_seen)
            return [self._endpoint(holder, ip)]
        local = self.store.holder(obs.local_ip, obs.first_seen)
        clients = (
            (obs.pod_uid, _memory_key(local, obs.local_ip))
            if obs.pod_uid is not None
            else (_memory_key(local, obs.local_ip), obs.local_ip)
        )
        name = self.memory.name(clients, ip, obs.first_seen)
        if name is not None:
            return [Endpoint(type="external", dns_name=name, ip=ip)]
        return [self._stand_in(ip, final)]

    def _dialled_service(self, obs: SocketObservation) -> str | None:
        """The service whose address (or node port) the client dialled, if it was one."""
        assert obs.dialled_ip is not None
        holder = self.store.holder(obs.dialled_ip, obs.first_seen)
        if holder is None:
            return None
        if holder.kind == "service":
            return holder.key
        if holder.kind == "node" and obs.dialled_port is not None:
            return self.store.by_node_port.get(obs.dialled_port)
        return None

    def _backend(self, behind: list[Endpoint], holder: Holding | None) -> list[Endpoint]:
        """Of the endpoints behind a service, the one the answering pod belongs to.

        All of them when the answering address is no known pod, or its pod's
        workload is not among them (the service changed in between): the call
        went through the service, to one of those.
        """
        if holder is None or holder.kind != "pod":
            return behind
        pod = self.store.pods[holder.key]
        mine = [
            e
            for e in behind
            if e.type == "workload"
            and (e.namespace, e.name, e.kind)
            == (pod.namespace, pod.workload.name, pod.workload.kind)
        ]
        return mine or behind

    def _servers_by_name(self, answer: DnsAnswer, final: bool) -> list[Endpoint]:
        """The servers a name means: see the module docstring and docs/streams.md."""
        asked = classify(answer.qname, self.domain)
        if isinstance(asked, ExternalName):
            return [Endpoint(type="external", dns_name=asked.name)]
        for name in (answer.qname, *answer.cnames):
            kind = asked if name is answer.qname else classify(name, self.domain)
            known = self._known(kind, answer.ts)
            if known is not None:
                return known
            if isinstance(kind, ExternalName):  # a search path or autopath product
                if isinstance(asked, ServiceName) and not final:
                    raise Late(answer.qname)  # unless an ExternalName service is on its way
                return [Endpoint(type="external", dns_name=kind.name)]
        return self._unknown(asked, answer.qname, final)

    def _known(self, name: ClusterName, ts: float) -> list[Endpoint] | None:
        """What a known object answers for ``name`` at ``ts``; None if none does."""
        match name:
            case ApiServerName():
                return [APISERVER]
            case ServiceName():
                service = self.store.service(name.namespace, name.service)
                return None if service is None else self._behind(_key(service), ts)
            case HeadlessPodName():
                pod = self.store.pod_by_hostname(name.namespace, name.service, name.hostname)
                if pod is None and name.ip is not None:
                    holder = self.store.holder(name.ip, ts)
                    pod = (
                        None
                        if holder is None or holder.kind != "pod"
                        else self.store.pods[holder.key]
                    )
                return None if pod is None else [workload_of(pod, service=name.service)]
            case PodIpName():
                holder = self.store.holder(name.ip, ts)
                if holder is not None and holder.kind == "pod":
                    return [self._endpoint(holder, name.ip)]
        return None

    def _unknown(self, asked: ClusterName, qname: str, final: bool) -> list[Endpoint]:
        """A cluster name no known object answers for: wait, then a stand-in, or nothing."""
        match asked:
            case ServiceName():
                stand_in = Endpoint(type="service", namespace=asked.namespace, name=asked.service)
            case HeadlessPodName():
                if final and self.store.service(asked.namespace, asked.service) is None:
                    self.counters.drop("unknown_cluster_name")  # a name's shape, no service
                    return []
                stand_in = Endpoint(type="service", namespace=asked.namespace, name=asked.service)
            case PodIpName():
                stand_in = Endpoint(type="ip", ip=asked.ip)
            case _:
                self.counters.drop("unknown_cluster_name")
                return []  # nothing to say about a name no cluster object can have
        if not final:
            raise Late(qname)
        self.fallbacks += 1
        return [stand_in]

    def _behind(self, key: str, ts: float) -> list[Endpoint]:
        """The endpoints a call to service ``key`` at ``ts`` reaches."""
        if self.store.workload_versions(key) > 1:
            self.consulted.append((key, self.store.workloads_at(key, ts)))
        return behind(self.store, key, ts)


def behind(store: IdentityStore, key: str, ts: float) -> list[Endpoint]:
    """The endpoints a call to service ``key`` (``namespace/name``) at ``ts`` reaches:
    the API server, an ExternalName's target, the workloads behind it then, or the
    service itself when nothing is behind it."""
    service = store.services[key]
    if (service.namespace, service.name) == ("default", "kubernetes"):
        return [APISERVER]
    if service.type == "ExternalName" and service.external_name:
        return [Endpoint(type="external", dns_name=service.external_name, service=service.name)]
    version = store.workloads_at(key, ts)
    if version.workloads:
        return [
            Endpoint(
                type="workload",
                namespace=w.namespace,
                name=w.name,
                kind=w.kind,
                service=service.name,
            )
            for w in version.workloads
        ]
    return [Endpoint(type="service", namespace=service.namespace, name=service.name)]


def _key(service: ServiceIdentity) -> str:
    return f"{service.namespace}/{service.name}"


def _memory_key(holding: Holding | None, ip: str) -> str:
    """How :class:`DnsMemory` names a client: its identity if known, else its address."""
    if holding is None or holding.kind == "service":
        return ip
    return holding.key if holding.kind == "pod" else f"node/{holding.key}"
