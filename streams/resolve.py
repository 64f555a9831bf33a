"""From raw capture events to sightings of edges: who called whom. Pure.

:class:`Resolver` answers, for a ``DnsAnswer`` or a ``SocketObservation``,
which client endpoint called which server endpoints, resolving IPs against
the time-versioned :class:`~streams.identity.IdentityStore` at the event's own
time (DESIGN.md, points 3 and 4):

- DNS: the client is whoever held ``client_ip``; the server comes from the
  name (a service and the workloads behind it, a headless per-pod name, a
  ``*.pod`` name, the API server, or an external name);
- sockets, client side: the remote IP is a pod, a service's cluster IP, a
  node, or an address this client got in a DNS answer within its TTL (the
  same external endpoint that answer named); only then a raw ``ip``;
- sockets, server side: exactly the remote pod calling the local pod.

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
from streams.identity import Holding, IdentityStore
from streams.names import (
    ApiServerName,
    ExternalName,
    HeadlessPodName,
    PodIpName,
    ServiceName,
    classify,
)

APISERVER = Endpoint(type="apiserver")
DEFAULT_DNS_SLACK = 30.0
DEFAULT_DNS_RETENTION = 3600.0


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


class DnsMemory:
    """Which name each client was told an IP belongs to, and until when."""

    def __init__(
        self, slack: float = DEFAULT_DNS_SLACK, retention: float = DEFAULT_DNS_RETENTION
    ) -> None:
        self.slack = slack
        self.retention = retention
        self._names: dict[tuple[str, str], tuple[str, float, float]] = {}
        self._oldest_kept = 0.0

    def remember(self, answer: DnsAnswer, name: str) -> None:
        """``answer`` told its client that its addresses are the external ``name``."""
        valid_until = answer.ts + answer.ttl + self.slack
        for ip in answer.answers:
            self._names[(answer.client_ip, ip)] = (name, answer.ts, valid_until)
        if answer.ts - self._oldest_kept > self.retention:
            self._forget_before(answer.ts - self.retention)

    def name(self, client_ip: str, ip: str, connected_at: float) -> str | None:
        """The name ``client_ip`` was told for ``ip``, if the answer was valid then."""
        known = self._names.get((client_ip, ip))
        if known is None:
            return None
        name, answered_at, valid_until = known
        return name if answered_at - self.slack <= connected_at <= valid_until else None

    def _forget_before(self, horizon: float) -> None:
        self._names = {k: v for k, v in self._names.items() if v[1] >= horizon}
        self._oldest_kept = horizon

    def __len__(self) -> int:
        return len(self._names)


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
    ) -> None:
        self.store = store
        self.counters = counters
        self.domain = cluster_domain
        self.excluded = excluded_namespaces
        self.memory = memory or DnsMemory()
        self.fallbacks = 0
        """How many times an unknown identity was replaced by a raw endpoint."""

    # --- events ----------------------------------------------------------------

    def dns(self, answer: DnsAnswer, *, final: bool = False) -> list[Sight]:
        """Sightings of one DNS answer; raises :class:`Late` unless ``final``."""
        servers = self._servers_by_name(answer, final)
        for server in servers:  # before the client may turn out late: sockets need it now
            if server.type == "external" and server.dns_name:
                self.memory.remember(answer, server.dns_name)
        client = self._client(answer.client_ip, answer.ts, final)
        return self._keep([Sight(client, s, None, "dns", answer.ts) for s in servers])

    def socket(self, obs: SocketObservation, *, final: bool = False) -> list[Sight]:
        """Sightings of one socket observation; raises :class:`Late` unless ``final``."""
        if obs.role == "server":
            client = self._client(obs.remote_ip, obs.first_seen, final)
            server = self._local(obs, final)
            return self._keep([Sight(client, server, obs.local_port, "socket-server", obs.ts)])
        client = self._local(obs, final)
        servers = self._servers_by_ip(obs, final)
        return self._keep(
            [Sight(client, s, obs.remote_port, "socket-client", obs.ts) for s in servers]
        )

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
        if not final:
            raise Late(ip)
        self.fallbacks += 1
        return Endpoint(type="ip", ip=ip)

    def _local(self, obs: SocketObservation, final: bool) -> Endpoint:
        """The local side of a socket: its pod by UID when capture knew it, else by IP."""
        if obs.pod_uid is not None:
            pod = self.store.pod(obs.pod_uid)
            if pod is not None:
                return workload_of(pod)
        return self._client(obs.local_ip, obs.first_seen, final)

    def _endpoint(self, holder: Holding, ip: str) -> Endpoint:
        if holder.kind == "pod":
            return workload_of(self.store.pods[holder.key])
        return Endpoint(type="node", name=holder.key, ip=ip)

    def _servers_by_ip(self, obs: SocketObservation, final: bool) -> list[Endpoint]:
        ip = obs.remote_ip
        holder = self.store.holder(ip, obs.first_seen)
        if holder is not None:
            if holder.kind == "service":
                return self._behind(self.store.services[holder.key])
            return [self._endpoint(holder, ip)]
        name = self.memory.name(obs.local_ip, ip, obs.first_seen)
        if name is not None:
            return [Endpoint(type="external", dns_name=name, ip=ip)]
        if not final:
            raise Late(ip)
        self.fallbacks += 1
        return [Endpoint(type="ip", ip=ip)]

    def _servers_by_name(self, answer: DnsAnswer, final: bool) -> list[Endpoint]:
        name = classify(answer.qname, self.domain)
        match name:
            case ExternalName():
                return [Endpoint(type="external", dns_name=name.name)]
            case ApiServerName():
                return [APISERVER]
            case ServiceName():
                service = self.store.service(name.namespace, name.service)
                if service is not None:
                    return self._behind(service)
                if not final:
                    raise Late(answer.qname)
                self.fallbacks += 1
                return [Endpoint(type="service", namespace=name.namespace, name=name.service)]
            case HeadlessPodName():
                pod = self.store.pod_named(name.namespace, name.hostname)
                if pod is not None:
                    return [workload_of(pod, service=name.service)]
                if not final:
                    raise Late(answer.qname)
                self.fallbacks += 1
                return [Endpoint(type="service", namespace=name.namespace, name=name.service)]
            case PodIpName():
                holder = self.store.holder(name.ip, answer.ts)
                if holder is not None and holder.kind == "pod":
                    return [self._endpoint(holder, name.ip)]
                if not final:
                    raise Late(answer.qname)
                self.fallbacks += 1
                return [Endpoint(type="ip", ip=name.ip)]
        self.counters.drop("unknown_cluster_name")
        return []  # nothing to say about a name no cluster object can have

    def _behind(self, service: ServiceIdentity) -> list[Endpoint]:
        """The endpoints a call to ``service`` reaches."""
        if (service.namespace, service.name) == ("default", "kubernetes"):
            return [APISERVER]
        if service.type == "ExternalName" and service.external_name:
            return [Endpoint(type="external", dns_name=service.external_name, service=service.name)]
        if service.workloads:
            return [
                Endpoint(
                    type="workload",
                    namespace=w.namespace,
                    name=w.name,
                    kind=w.kind,
                    service=service.name,
                )
                for w in service.workloads
            ]
        return [Endpoint(type="service", namespace=service.namespace, name=service.name)]
