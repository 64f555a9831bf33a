"""The true edges of a run on a real cluster: what the pods did, as the API explains it. Pure.

The netns lab's truth (:mod:`lab.truth`) follows callmap's own resolution
rules over the plan. This one shares none of that code (it imports no truth,
DNS zone, streams, watch or capture module): it reads

- the **call log** every lab pod writes (:mod:`lab.caller`): one line per
  call attempt, ``{"t", "pod", "to", "addr", "port", "ok", "peer"}``, where
  ``peer`` is the answering server's own words (``pong <ns>/<pod>``, or
  ``pong external:<name>`` from the cluster's "internet"), and ``"protocol":
  "udp"`` on a UDP call's lines (a datagram and its answer);
- the **API record** (:mod:`lab.clusterrecord`): every version of every Pod,
  Service, ReplicaSet, Job and Node the API server held during the run, each
  stamped with the time the lab saw it (the callers' clock: both run on this
  machine).

A call's client is the logging pod's workload, from its owner chain as the API
server recorded it (Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob,
Pod -> StatefulSet or DaemonSet, a bare Pod is its own workload); a
host-network pod acts as its node (``node:<name>``). Its server, for the
call's port:

- a name is looked up as the pod's resolver does (search path
  ``<ns>.svc.<domain> svc.<domain> <domain>``, ``ndots:5``) against the
  Services and pods the API server held at the call's time. A Service's name
  (or a Service's cluster IP) gives, as callmap's edge model says, one edge per
  workload whose pods the Service selected then (running, with an address,
  not terminating, labels matching the selector); an ExternalName Service
  gives ``external:<its target>``; ``kubernetes.default`` gives ``apiserver``;
- a per-pod name (``<host>.<svc>.<ns>.svc``), a ``*.pod`` name or a pod's
  IP address gives the workload of the pod that held the address at the
  call's time (the API record, give or take
  :data:`lab.clusterhistory.HOLD_SLACK` seconds, since a kubelet reports an
  address a moment after the pod first answers on it);
- an answer ``pong external:<name>`` gives ``external:<name>`` to a call by
  name, ``ip:<address>`` to a call by address; a node's address gives
  ``node:<name>``; an address nobody held gives ``ip:<address>``;
- a long-lived connection to an external name opened before capture started
  (``capture_started``) is seen by its socket alone: ``ip:<address>``.

Every edge carries its port and the call's protocol (``tcp`` or ``udp``).
Successful calls make required edges; failed ones (refused, timed out) make
tolerated ones, whoever would have answered, except a Service that selected
nobody while its name still resolved: its edge ``service:ns/name`` is
required when the failures span :data:`EMPTY_SERVICE_SPAN` seconds (callmap
reports a service with nothing behind it), tolerated when shorter. DNS over
TCP to the cluster's DNS server (the workloads behind ``kube-system/kube-dns``)
is tolerated for every client that called by name. Where the log and the
record disagree (an answer from a pod the Service did not select, an address
whose holder is not the pod that answered), the record decides and a note
says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from lab.clusterhistory import ApiHistory, PodState, ServiceState, is_ip

EMPTY_SERVICE_SPAN = 10.0
"""Failed calls to a Service with nobody behind it must span this long to be required."""
ENDPOINT_SYNC = 5.0
"""Seconds a Service's change may take to reach kube-proxy on every node (its nftables
sync, after the EndpointSlice's watch), on a loaded two-core machine."""
NDOTS = 5
DNS_SERVICE = ("kube-system", "kube-dns")
DNS_PORT = 53

# --- inputs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One line of a caller's log."""

    t: float
    pod: str
    """``ns/name`` of the calling pod."""
    to: str
    """The name or address as addressed."""
    addr: str | None
    """The address connected to, or last tried; None when the name did not resolve."""
    port: int
    ok: bool
    peer: str | None
    """The server's answer (``pong ...``)."""
    opened: float | None = None
    """Long-lived connections: when this connection was opened."""
    protocol: Literal["tcp", "udp"] = "tcp"
    """``udp``: a datagram sent and its answer awaited (lines without the key are TCP)."""


def parse_call_line(line: str) -> CallRecord:
    """One log line; ValueError when it is not one."""
    try:
        raw = json.loads(line)
        opened = raw.get("opened")
        protocol = raw.get("protocol", "tcp")
        if protocol not in ("tcp", "udp"):
            raise ValueError(f"protocol {protocol!r}")
        return CallRecord(
            t=float(raw["t"]),
            pod=str(raw["pod"]),
            to=str(raw["to"]),
            addr=None if raw.get("addr") is None else str(raw["addr"]),
            port=int(raw["port"]),
            ok=bool(raw["ok"]),
            peer=None if raw.get("peer") is None else str(raw["peer"]),
            opened=None if opened is None else float(opened),
            protocol=protocol,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a call log line: {line[:120]!r} ({exc})") from None


def parse_call_log(text: str) -> tuple[list[CallRecord], int]:
    """Every line of a log; also how many lines were not log lines (a torn last line)."""
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(parse_call_line(line))
        except ValueError:
            bad += 1
    return records, bad


# --- the truth --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class TrueEdge:
    client: str
    """``ns/workload``, or ``node:<name>`` for a host-network client."""
    server: str
    """``ns/workload``, ``external:<name>``, ``ip:<address>``, ``node:<name>``,
    ``service:ns/name`` or ``apiserver``."""
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"

    def as_json(self) -> dict[str, str | int]:
        document: dict[str, str | int] = {"client": self.client, "server": self.server}
        return {**document, "port": self.port, "protocol": self.protocol}

    def __str__(self) -> str:
        udp = "/udp" if self.protocol == "udp" else ""  # a bare port is TCP, as in `ports`
        return f"{self.client} -> {self.server}:{self.port}{udp}"


@dataclass(frozen=True, slots=True)
class ClusterTruth:
    edges: frozenset[TrueEdge]
    """Every one of these must be reported."""
    tolerated: frozenset[TrueEdge]
    """These may be reported too."""
    notes: tuple[str, ...] = ()
    """Where the call logs and the API record disagree, and what was done (each once)."""
    calls: int = 0
    """Log lines read."""

    def as_json(self) -> dict[str, Any]:
        return {
            "edges": [e.as_json() for e in sorted(self.edges)],
            "tolerated": [e.as_json() for e in sorted(self.tolerated)],
            "notes": list(self.notes),
            "calls": self.calls,
        }


Weight = Literal["required", "tolerated", "empty"]


@dataclass(frozen=True, slots=True)
class _Target:
    kind: Literal["service", "pod", "external"]
    service: ServiceState | None = None
    name: str = ""


def true_edges(
    calls: Iterable[CallRecord],
    history: ApiHistory,
    domain: str = "cluster.local",
    capture_started: float | None = None,
) -> ClusterTruth:
    """The edges the calls in the logs make, explained by the API record."""
    return _Builder(history, domain, capture_started).build(calls)


class _Builder:
    def __init__(self, history: ApiHistory, domain: str, capture_started: float | None) -> None:
        self.history = history
        self.domain = domain.strip(".")
        self.capture_started = capture_started
        self.notes: dict[str, None] = {}

    def note(self, text: str | None) -> None:
        if text is not None:
            self.notes.setdefault(text)

    def build(self, calls: Iterable[CallRecord]) -> ClusterTruth:
        required: set[TrueEdge] = set()
        tolerated: set[TrueEdge] = set()
        empty: dict[TrueEdge, list[float]] = defaultdict(list)
        dns = self._dns_workloads()
        count = 0
        for call in sorted(calls, key=lambda c: c.t):
            count += 1
            pod = self.history.pod_named(call.pod, call.t)
            if pod is None:
                self.note(f"pod {call.pod} logged calls but the API record never held it")
                continue
            client, problem = self.history.workload(pod)
            self.note(problem)
            for server, weight in self._servers(call, pod):
                edge = TrueEdge(client, server, call.port, call.protocol)
                if weight == "required":
                    required.add(edge)
                elif weight == "tolerated":
                    tolerated.add(edge)
                else:
                    empty[edge].append(call.t)
            if not is_ip(call.to):
                tolerated.update(TrueEdge(client, d, DNS_PORT) for d in dns)
        for edge, times in empty.items():
            settled = max(times) - min(times) >= EMPTY_SERVICE_SPAN
            (required if settled else tolerated).add(edge)
        return ClusterTruth(
            frozenset(required),
            frozenset(tolerated - required),
            tuple(self.notes),
            count,
        )

    def _dns_workloads(self) -> set[str]:
        result = set()
        for timeline in self.history.services.values():
            for _start, _end, service in timeline.spans():
                if (service.namespace, service.name) == DNS_SERVICE:
                    result |= {
                        self.history.workload(p)[0] for p in self.history.ever_selected(service)
                    }
        return result

    # -- one call --

    def _servers(self, call: CallRecord, pod: PodState) -> list[tuple[str, Weight]]:
        weight: Weight = "required" if call.ok else "tolerated"
        peer_kind, peer = _peer(call.peer)
        if call.peer is not None and peer_kind is None:
            self.note(f"{call.pod} -> {call.to}:{call.port}: unexpected answer {call.peer!r}")
        if is_ip(call.to):
            if call.ok and peer_kind == "external":
                return [(f"ip:{call.addr or call.to}", weight)]
            service = self.history.service_with_ip(call.addr or call.to, call.t)
            if service is not None:
                return self._service(call, service, peer if peer_kind == "pod" else None)
            return self._address(call, peer if peer_kind == "pod" else None)
        target = self._lookup(call.to, pod.namespace, call.t)
        if target is None:
            if call.ok:
                self.note(f"{call.pod} reached {call.to!r}, which the API record does not explain")
            return self._address(call, peer if peer_kind == "pod" else None)
        if target.kind == "service" and target.service is not None:
            return self._service(call, target.service, peer if peer_kind == "pod" else None)
        if target.kind == "external":
            if not call.ok:
                return [] if call.addr is None else [(f"external:{target.name}", weight)]
            name = peer if peer_kind == "external" and peer else target.name
            if peer_kind != "external":
                self.note(f"{call.pod} -> {call.to}:{call.port} answered by {call.peer!r}")
            return [(self._external(call, name), weight)]
        return self._address(call, peer if peer_kind == "pod" else None)

    def _external(self, call: CallRecord, name: str) -> str:
        before = self.capture_started is not None and call.opened is not None
        if before and call.opened is not None and call.opened < (self.capture_started or 0.0):
            return f"ip:{call.addr}"  # only the socket shows it: no DNS answer was captured
        return f"external:{name}"

    def _service(
        self, call: CallRecord, service: ServiceState, peer: str | None
    ) -> list[tuple[str, Weight]]:
        weight: Weight = "required" if call.ok else "tolerated"
        if service.type == "ExternalName":
            return [(self._external(call, str(service.external_name)), weight)]
        if (service.namespace, service.name) == ("default", "kubernetes"):
            return [("apiserver", weight)]
        workloads = {self.history.workload(p)[0] for p in self.history.selected(service, call.t)}
        if call.ok and peer is not None:
            answering = self.history.pod_named(peer, call.t)
            if answering is not None:
                name = self.history.workload(answering)[0]
                if name not in workloads and name in self._just_dropped(service, call.t):
                    workloads.add(name)  # kube-proxy had not applied the change yet
                elif name not in workloads:
                    self.note(
                        f"{call.pod} -> {call.to}:{call.port} answered by {peer}, "
                        f"which service {service.key} did not select then: counted"
                    )
                    workloads.add(name)
        if workloads:
            return [(w, weight) for w in sorted(workloads)]
        if call.addr is None:
            return []  # the name did not resolve: no DNS answer to report
        return [(f"service:{service.key}", "empty")]

    def _just_dropped(self, service: ServiceState, t: float) -> set[str]:
        """Workloads ``service`` selected within :data:`ENDPOINT_SYNC` seconds before ``t``.

        A Service's change reaches each node's kube-proxy a moment after the API
        server has it; until then a connection may still go to a pod the Service
        has just stopped selecting (one that is terminating, say).
        """
        pods = self.history.selected_during(service, t - ENDPOINT_SYNC, t)
        return {self.history.workload(p)[0] for p in pods}

    def _address(self, call: CallRecord, peer: str | None) -> list[tuple[str, Weight]]:
        weight: Weight = "required" if call.ok else "tolerated"
        address = call.addr
        if address is None:
            return []
        node = self.history.node_with_ip(address, call.t)
        if node is not None:
            return [(f"node:{node}", weight)]
        holder = self.history.holder(address, call.t)
        answering = None if peer is None else self.history.pod_named(peer, call.t)
        if holder is not None and answering is not None and holder.uid != answering.uid:
            self.note(
                f"{call.pod} -> {address}:{call.port}: the record gives the "
                f"address to {holder.key}, {answering.key} answered: the record counts"
            )
        if holder is None and call.ok and answering is not None:
            self.note(
                f"{call.pod} -> {address}:{call.port}: nobody held the address "
                f"in the record; {answering.key} answered and counts"
            )
            holder = answering
        if holder is None:
            return [(f"ip:{address}", weight)] if call.ok else []
        return [(self.history.workload(holder)[0], weight)]

    def _lookup(self, name: str, namespace: str, t: float) -> _Target | None:
        """What ``name`` resolves to from a pod in ``namespace`` (None: nothing)."""
        search = [f"{namespace}.svc.{self.domain}", f"svc.{self.domain}", self.domain]
        expanded = [f"{name}.{suffix}" for suffix in search]
        candidates = [*expanded, name] if name.count(".") < NDOTS else [name, *expanded]
        for fqdn in candidates:
            target = self._exact(fqdn, t)
            if target is not None:
                return target
        return None

    def _exact(self, fqdn: str, t: float) -> _Target | None:
        svc_suffix, pod_suffix = f".svc.{self.domain}", f".pod.{self.domain}"
        if fqdn.endswith(svc_suffix):
            labels = fqdn[: -len(svc_suffix)].split(".")
            if len(labels) == 2:
                service = self.history.service_named(labels[1], labels[0], t)
                return None if service is None else _Target("service", service)
            if len(labels) == 3 and self.history.per_pod_name(labels[0], labels[1], labels[2], t):
                return _Target("pod")
            return None
        if fqdn.endswith(pod_suffix):
            labels = fqdn[: -len(pod_suffix)].split(".")
            if len(labels) == 2 and is_ip(labels[0].replace("-", ".")):
                return _Target("pod")
            return None
        if fqdn == self.domain or fqdn.endswith("." + self.domain):
            return None
        return _Target("external", name=fqdn)


def _peer(answer: str | None) -> tuple[Literal["pod", "external"] | None, str]:
    """``pong ns/pod`` -> ("pod", "ns/pod"); ``pong external:n`` -> ("external", "n")."""
    if answer is None or not answer.startswith("pong "):
        return None, ""
    who = answer[len("pong ") :].strip()
    if who.startswith("external:"):
        return "external", who[len("external:") :]
    if who.count("/") == 1:
        return "pod", who
    return None, ""
