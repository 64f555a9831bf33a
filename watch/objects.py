"""Kubernetes objects slimmed to what callmap's records need.

The API returns large objects (a pod is often 5-20 KB of JSON) and the watcher
keeps none of them: each ``slim_*`` function takes one object as the API
returns it (decoded JSON: dicts and lists) and returns a small frozen struct,
or raises :class:`BadObject` naming the field that is missing or malformed.
Strings that repeat across objects (namespaces, node names, label keys, owner
kinds) are interned, and so are equal small values (owner references, label
subsets, workloads), so 100,000 pods share one copy of each: the pods of one
ReplicaSet hold one OwnerRef and, usually, one labels dict between them.
Pure: no I/O.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from callmap.errors import CallmapError
from callmap.inventory import canonical_address
from callmap.wire import ServicePort
from callmap.wire.records import ServiceType
from watch.interning import Shared
from watch.options import WORKLOAD_ANNOTATION, LabelPolicy

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NODE_ADDRESS_TYPES = frozenset({"InternalIP", "ExternalIP"})
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
NETWORK_READY = "PodReadyToStartContainers"
_SERVICE_TYPES: dict[str, ServiceType] = {
    "ClusterIP": "ClusterIP",
    "NodePort": "NodePort",
    "LoadBalancer": "LoadBalancer",
    "ExternalName": "ExternalName",
}

intern = sys.intern


class BadObject(CallmapError):
    """An object the watcher cannot use; ``field`` names where it went wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class OwnerRef(msgspec.Struct, frozen=True, gc=False):
    """One ownerReference: which object controls this one."""

    group: str
    kind: str
    name: str
    uid: str


class SlimPod(msgspec.Struct, frozen=True, gc=False):
    uid: str
    namespace: str
    name: str
    ips: tuple[str, ...]
    node: str | None
    host_network: bool
    labels: dict[str, str]
    created: float | None
    finished: bool
    """The pod has Succeeded or Failed: it no longer holds its IPs."""
    owner: OwnerRef | None
    workload_name: str | None
    """The ``callmap.io/workload`` annotation, overriding the workload's name."""
    hostname: str | None = None
    """``spec.hostname``: with ``subdomain``, its name under a headless service."""
    subdomain: str | None = None
    network_ready: float | None = None
    """When its sandbox got its network (and so its IPs): the ``PodReadyToStartContainers``
    condition's last transition to True; None on clusters older than 1.29 or before."""
    started: float | None = None
    """``status.startTime``: when its kubelet took it on, a little before its IPs."""


class SlimService(msgspec.Struct, frozen=True, gc=False):
    namespace: str
    name: str
    type: ServiceType
    cluster_ips: tuple[str, ...]
    external_name: str | None
    ports: tuple[ServicePort, ...]
    created: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class SlimSlice(msgspec.Struct, frozen=True, gc=False):
    """An EndpointSlice: the pods (``namespace/name``) behind one service."""

    namespace: str
    name: str
    service: str | None
    """``namespace/name`` of its service; None for a slice that names none."""
    pods: tuple[tuple[str, str], ...]
    """Every endpoint's pod as (namespace, name), ready or not."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class SlimNode(msgspec.Struct, frozen=True, gc=False):
    name: str
    ips: tuple[str, ...]


class SlimOwner(msgspec.Struct, frozen=True, gc=False):
    """A controller (ReplicaSet, Job, ...): enough to follow it to its own owner."""

    uid: str
    kind: str
    name: str
    owner: OwnerRef | None


# --- fields ---------------------------------------------------------------------


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadObject(field, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadObject(field, f"expected a list, got {type(value).__name__}")
    return value


def _text(container: Mapping[str, Any], key: str, field: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise BadObject(field, "missing" if value is None else f"expected text, got {value!r}")
    return value


def _optional_text(container: Mapping[str, Any], key: str, field: str) -> str | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadObject(field, f"expected text, got {value!r}")
    return value


def canonical_ip(text: Any, field: str) -> str:
    """The canonical text of an address; IPv4-mapped IPv6 is written as IPv4."""
    if not isinstance(text, str):
        raise BadObject(field, f"expected an IP address, got {text!r}")
    try:
        return canonical_address(text)
    except ValueError:
        raise BadObject(field, f"not an IP address: {text!r}") from None


def parse_time(text: Any, field: str) -> float | None:
    """RFC 3339 (as the API writes times) to seconds since the epoch."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise BadObject(field, f"expected a time, got {text!r}")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise BadObject(field, f"not an RFC 3339 time: {text!r}") from None


def _metadata(obj: Any) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise BadObject("object", f"expected an object, got {type(obj).__name__}")
    return _mapping(obj.get("metadata"), "metadata")


def _identity(meta: Mapping[str, Any], namespaced: bool = True) -> tuple[str, str]:
    name = _text(meta, "name", "metadata.name")
    namespace = intern(_text(meta, "namespace", "metadata.namespace")) if namespaced else ""
    return namespace, name


def controller_of(meta: Mapping[str, Any]) -> OwnerRef | None:
    """The owner with ``controller: true``, else the first owner, else None."""
    refs = _list(meta.get("ownerReferences"), "metadata.ownerReferences")
    if not refs:
        return None
    index = next((i for i, ref in enumerate(refs) if _mapping(ref, "").get("controller")), 0)
    where = f"metadata.ownerReferences[{index}]"
    ref = _mapping(refs[index], where)
    api_version = _text(ref, "apiVersion", f"{where}.apiVersion")
    group = api_version.rpartition("/")[0]  # "apps/v1" -> "apps", "v1" -> ""
    kind = _text(ref, "kind", f"{where}.kind")
    name = _text(ref, "name", f"{where}.name")
    uid = _text(ref, "uid", f"{where}.uid")
    shared = _owner_refs.get(
        uid, lambda: OwnerRef(group=intern(group), kind=intern(kind), name=intern(name), uid=uid)
    )
    if (shared.group, shared.kind, shared.name) != (group, kind, name):  # a bad reference
        return OwnerRef(group=group, kind=kind, name=name, uid=uid)
    return shared


_owner_refs: Shared[str, OwnerRef] = Shared(limit=50_000)
_label_sets: Shared[tuple[tuple[str, str], ...], dict[str, str]] = Shared(limit=20_000)
EMPTY_LABELS: dict[str, str] = {}


def select_labels(labels: Any, policy: LabelPolicy) -> dict[str, str]:
    """The bounded subset of ``labels`` that ``policy`` keeps (shared, never to be changed)."""
    labels = _mapping(labels, "metadata.labels")
    chosen: dict[str, str] = {}
    for wanted in policy.keys if labels else ():
        if wanted.endswith("/"):
            keys = sorted(key for key in labels if key.startswith(wanted))
        else:
            keys = [wanted] if wanted in labels else []
        for key in keys:
            value = labels[key]
            if key in chosen or not isinstance(value, str):
                continue
            if len(chosen) >= policy.max_labels:
                break
            chosen[key] = value[: policy.max_value_length]
    if not chosen:
        return EMPTY_LABELS
    return _label_sets.get(
        tuple(chosen.items()), lambda: {intern(k): intern(v) for k, v in chosen.items()}
    )


# --- kinds ----------------------------------------------------------------------


def slim_pod(obj: Any, policy: LabelPolicy) -> SlimPod:
    meta = _metadata(obj)
    namespace, name = _identity(meta)
    spec = _mapping(obj.get("spec"), "spec")
    status = _mapping(obj.get("status"), "status")
    entries = _list(status.get("podIPs"), "status.podIPs")
    if entries:
        raw_ips = [_mapping(e, f"status.podIPs[{i}]").get("ip") for i, e in enumerate(entries)]
        fields = [f"status.podIPs[{i}].ip" for i in range(len(entries))]
    elif status.get("podIP"):
        raw_ips, fields = [status["podIP"]], ["status.podIP"]
    else:
        raw_ips, fields = [], []
    ips = tuple(dict.fromkeys(canonical_ip(ip, f) for ip, f in zip(raw_ips, fields, strict=True)))
    node = _optional_text(spec, "nodeName", "spec.nodeName")
    annotations = _mapping(meta.get("annotations"), "metadata.annotations")
    return SlimPod(
        uid=_text(meta, "uid", "metadata.uid"),
        namespace=namespace,
        name=name,
        ips=ips,
        node=intern(node) if node else None,
        host_network=spec.get("hostNetwork") is True,
        labels=select_labels(meta.get("labels"), policy),
        created=parse_time(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        finished=status.get("phase") in TERMINAL_PHASES,
        owner=controller_of(meta),
        workload_name=_optional_text(
            annotations, WORKLOAD_ANNOTATION, f"metadata.annotations[{WORKLOAD_ANNOTATION}]"
        ),
        hostname=_optional_text(spec, "hostname", "spec.hostname"),
        subdomain=_interned(_optional_text(spec, "subdomain", "spec.subdomain")),
        network_ready=_network_ready(status),
        started=parse_time(status.get("startTime"), "status.startTime"),
    )


def _interned(text: str | None) -> str | None:
    return intern(text) if text else None


def _network_ready(status: Mapping[str, Any]) -> float | None:
    for i, condition in enumerate(_list(status.get("conditions"), "status.conditions")):
        condition = _mapping(condition, f"status.conditions[{i}]")
        if condition.get("type") == NETWORK_READY and condition.get("status") == "True":
            where = f"status.conditions[{i}].lastTransitionTime"
            return parse_time(condition.get("lastTransitionTime"), where)
    return None


def service_type(spec: Mapping[str, Any]) -> ServiceType:
    raw = spec.get("type") or "ClusterIP"
    kind = _SERVICE_TYPES.get(raw) if isinstance(raw, str) else None
    if kind is None:
        raise BadObject("spec.type", f"unknown service type {raw!r}")
    if kind == "ClusterIP" and spec.get("clusterIP") == "None":
        return "Headless"
    return kind


def _port(entry: Any, where: str) -> ServicePort:
    entry = _mapping(entry, where)
    port = entry.get("port")
    if not isinstance(port, int) or isinstance(port, bool):
        raise BadObject(f"{where}.port", "missing" if port is None else f"not a port: {port!r}")
    target = entry.get("targetPort")
    if target is not None and not isinstance(target, int | str):
        raise BadObject(f"{where}.targetPort", f"not a port or name: {target!r}")
    node_port = entry.get("nodePort")
    if node_port is not None and not isinstance(node_port, int):
        raise BadObject(f"{where}.nodePort", f"not a port: {node_port!r}")
    return ServicePort(
        port=port,
        protocol=intern(_optional_text(entry, "protocol", f"{where}.protocol") or "TCP"),
        name=_optional_text(entry, "name", f"{where}.name"),
        target_port=target,
        node_port=node_port,
    )


def slim_service(obj: Any) -> SlimService:
    meta = _metadata(obj)
    namespace, name = _identity(meta)
    spec = _mapping(obj.get("spec"), "spec")
    kind = service_type(spec)
    raw_ips = _list(spec.get("clusterIPs"), "spec.clusterIPs") or [spec.get("clusterIP")]
    ips = tuple(
        canonical_ip(ip, f"spec.clusterIPs[{i}]")
        for i, ip in enumerate(raw_ips)
        if ip not in (None, "", "None")
    )
    external = _optional_text(spec, "externalName", "spec.externalName")
    if kind == "ExternalName" and external is None:
        raise BadObject("spec.externalName", "missing on an ExternalName service")
    ports = tuple(
        _port(entry, f"spec.ports[{i}]") for i, entry in enumerate(_list(spec.get("ports"), ""))
    )
    return SlimService(
        namespace=namespace,
        name=name,
        type=kind,
        cluster_ips=() if kind == "ExternalName" else ips,
        external_name=external.lower().rstrip(".") if external else None,
        ports=ports,
        created=parse_time(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
    )


def slim_slice(obj: Any) -> SlimSlice:
    meta = _metadata(obj)
    namespace, name = _identity(meta)
    labels = _mapping(meta.get("labels"), "metadata.labels")
    service = _optional_text(labels, SERVICE_NAME_LABEL, f"metadata.labels[{SERVICE_NAME_LABEL}]")
    pods: dict[tuple[str, str], None] = {}
    for i, endpoint in enumerate(_list(obj.get("endpoints"), "endpoints")):
        where = f"endpoints[{i}].targetRef"
        target = _mapping(_mapping(endpoint, f"endpoints[{i}]").get("targetRef"), where)
        if target.get("kind") != "Pod":
            continue  # an address with no pod behind it (a selector-less service)
        pod_namespace = _optional_text(target, "namespace", f"{where}.namespace") or namespace
        pods[intern(pod_namespace), _text(target, "name", f"{where}.name")] = None
    return SlimSlice(
        namespace=namespace,
        name=name,
        service=f"{namespace}/{service}" if service else None,
        pods=tuple(pods),
    )


def slim_node(obj: Any) -> SlimNode:
    meta = _metadata(obj)
    _, name = _identity(meta, namespaced=False)
    status = _mapping(obj.get("status"), "status")
    ips: dict[str, None] = {}
    for i, entry in enumerate(_list(status.get("addresses"), "status.addresses")):
        entry = _mapping(entry, f"status.addresses[{i}]")
        if entry.get("type") in NODE_ADDRESS_TYPES:
            ips[canonical_ip(entry.get("address"), f"status.addresses[{i}].address")] = None
    return SlimNode(name=intern(name), ips=tuple(ips))


def slim_owner(obj: Any, kind: str) -> SlimOwner:
    """A controller object (full or metadata-only) of a known ``kind``."""
    meta = _metadata(obj)
    return SlimOwner(
        uid=intern(_text(meta, "uid", "metadata.uid")),
        kind=intern(kind),
        name=intern(_text(meta, "name", "metadata.name")),
        owner=controller_of(meta),
    )
