"""The inventory file: pods, services and nodes written down instead of watched.

A YAML (or JSON, which is YAML) document with the optional key ``cluster``
and three lists, ``pods``, ``services`` and ``nodes``, whose entries have the
fields of the wire records without ``v`` and ``cluster`` (docs/watch.md has an
example). Hand-written files are forgiving where it is safe and strict where a
typo would go unnoticed: optional fields take the records' defaults, a pod
without ``uid`` gets one derived from its cluster, namespace and name, a pod
without ``workload`` is its own, and times may be numbers or RFC 3339; but an
unknown field, a malformed IP, a service type that does not exist or a key
that appears twice is an :class:`InventoryError` naming the entry and field.

Pure: :func:`load_inventory` parses text, :func:`inventory_records` makes the
wire records, :func:`dump_inventory` writes records as a file. The format lives
here, in the shared runtime, because two parts write it: ``callmap watch
--dump-inventory`` from a cluster, and the lab from its plan.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import yaml

from callmap.errors import CallmapError
from callmap.wire import (
    NodeIdentity,
    PodIdentity,
    ServiceIdentity,
    ServicePort,
    ServiceWorkload,
    WorkloadRef,
    local_identity_key,
)
from callmap.wire.records import ServiceType

_UID_NAMESPACE = uuid.UUID("6f1c2a4e-7b1d-4c55-9f38-0c1b9b8e5a10")  # callmap inventory pods


class InventoryError(CallmapError):
    """The inventory cannot be used; the message names the entry and the field."""


class _Entry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """An inventory entry: unknown fields are errors, defaults need not be written."""


class InventoryWorkload(_Entry, kw_only=True):
    kind: str
    name: str


class InventoryPod(_Entry, kw_only=True):
    uid: str | None = None
    namespace: str
    name: str
    ips: list[str] = []
    node: str | None = None
    host_network: bool = False
    workload: InventoryWorkload | None = None
    labels: dict[str, str] = {}
    created: float | None = None
    deleted: float | None = None
    ips_since: float | None = None
    hostname: str | None = None
    subdomain: str | None = None


class InventoryPort(_Entry, kw_only=True):
    port: int
    protocol: str = "TCP"
    name: str | None = None
    target_port: int | str | None = None
    node_port: int | None = None


class InventoryServiceWorkload(_Entry, kw_only=True):
    namespace: str
    kind: str
    name: str


class InventoryService(_Entry, kw_only=True):
    namespace: str
    name: str
    type: ServiceType = "ClusterIP"
    cluster_ips: list[str] = []
    external_name: str | None = None
    ports: list[InventoryPort] = []
    workloads: list[InventoryServiceWorkload] = []
    deleted: float | None = None
    created: float | None = None
    workloads_since: float | None = None
    exported: bool = False


class InventoryNode(_Entry, kw_only=True):
    name: str
    ips: list[str] = []
    deleted: float | None = None


class _Document(_Entry, kw_only=True):
    cluster: str | None = None
    cluster_uid: str | None = None
    pods: list[InventoryPod] = []
    services: list[InventoryService] = []
    nodes: list[InventoryNode] = []


@dataclass(frozen=True, slots=True)
class Inventory:
    """A parsed inventory: the entries as written, checked."""

    cluster: str | None
    pods: tuple[InventoryPod, ...]
    services: tuple[InventoryService, ...]
    nodes: tuple[InventoryNode, ...]
    cluster_uid: str | None = None
    """The cluster's id (a kube-system UID) when the file names one."""


@dataclass(frozen=True, slots=True)
class InventoryRecords:
    pods: tuple[PodIdentity, ...]
    services: tuple[ServiceIdentity, ...]
    nodes: tuple[NodeIdentity, ...]


_TIME_FIELDS = frozenset({"created", "deleted", "ips_since", "workloads_since"})


def _times_to_numbers(value: Any) -> Any:
    """Times (``created``, ``deleted``, ...) as epoch seconds: YAML reads an unquoted RFC 3339
    time as a datetime, and a quoted one is text."""
    if isinstance(value, list):
        return [_times_to_numbers(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {}
    for key, item in value.items():
        if key in _TIME_FIELDS:
            item = _epoch(item)
        elif isinstance(item, list | dict):
            item = _times_to_numbers(item)
        converted[key] = item
    return converted


def _epoch(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value  # the checks below say what is wrong with it
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return value


def load_inventory(text: str) -> Inventory:
    """Parse and check an inventory document (YAML or JSON)."""
    try:
        raw = yaml.load(text, Loader=yaml.CSafeLoader) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise InventoryError(f"not YAML or JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InventoryError("expected a mapping with pods, services and nodes at the top")
    try:
        document = msgspec.convert(_times_to_numbers(raw), _Document, strict=True)
    except msgspec.ValidationError as exc:
        raise InventoryError(str(exc).replace("`$.", "`")) from None
    for index, pod in enumerate(document.pods):
        _check_ips(pod.ips, f"pods[{index}].ips")
    for index, service in enumerate(document.services):
        _check_ips(service.cluster_ips, f"services[{index}].cluster_ips")
    for index, node in enumerate(document.nodes):
        _check_ips(node.ips, f"nodes[{index}].ips")
    return Inventory(
        document.cluster,
        tuple(document.pods),
        tuple(document.services),
        tuple(document.nodes),
        document.cluster_uid,
    )


def _check_ips(addresses: list[str], where: str) -> None:
    """Every address valid, and written canonically (in place)."""
    for index, text in enumerate(addresses):
        try:
            addresses[index] = canonical_address(text)
        except ValueError:
            raise InventoryError(f"{where}[{index}]: not an IP address: {text!r}") from None


def canonical_address(text: str) -> str:
    """The canonical text of an address; IPv4-mapped IPv6 is written as IPv4.

    Raises ValueError for anything that is not an address.
    """
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def pod_uid(cluster: str, namespace: str, name: str) -> str:
    """The uid of a pod the file gives none: stable for the same cluster, namespace and name."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"{cluster}/{namespace}/{name}"))


def inventory_records(inventory: Inventory, cluster: str) -> InventoryRecords:
    """The wire records of an inventory, stamped with ``cluster``; keys must be unique."""
    pods = tuple(
        PodIdentity(
            cluster=cluster,
            uid=pod.uid or pod_uid(cluster, pod.namespace, pod.name),
            namespace=pod.namespace,
            name=pod.name,
            ips=tuple(pod.ips),
            node=pod.node,
            host_network=pod.host_network,
            workload=WorkloadRef(kind=pod.workload.kind, name=pod.workload.name)
            if pod.workload
            else WorkloadRef(kind="Pod", name=pod.name),
            labels=dict(pod.labels),
            created=pod.created,
            deleted=pod.deleted,
            ips_since=pod.ips_since,
            hostname=pod.hostname,
            subdomain=pod.subdomain,
        )
        for pod in inventory.pods
    )
    services = tuple(
        ServiceIdentity(
            cluster=cluster,
            namespace=service.namespace,
            name=service.name,
            type=service.type,
            cluster_ips=tuple(service.cluster_ips),
            external_name=service.external_name,
            ports=tuple(ServicePort(**msgspec.structs.asdict(port)) for port in service.ports),
            workloads=tuple(
                ServiceWorkload(**msgspec.structs.asdict(w)) for w in service.workloads
            ),
            deleted=service.deleted,
            created=service.created,
            workloads_since=service.workloads_since,
            exported=service.exported,
        )
        for service in inventory.services
    )
    nodes = tuple(
        NodeIdentity(cluster=cluster, name=node.name, ips=tuple(node.ips), deleted=node.deleted)
        for node in inventory.nodes
    )
    _unique("pods", [local_identity_key(pod) for pod in pods])
    _unique("services", [local_identity_key(service) for service in services])
    _unique("nodes", [local_identity_key(node) for node in nodes])
    return InventoryRecords(pods, services, nodes)


def _unique(kind: str, keys: list[str]) -> None:
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise InventoryError(f"{kind}[{index}]: {key!r} appears twice")
        seen.add(key)


def dump_inventory(
    cluster: str | None,
    pods: Iterable[PodIdentity],
    services: Iterable[ServiceIdentity],
    nodes: Iterable[NodeIdentity],
    cluster_uid: str | None = None,
) -> str:
    """An inventory document (YAML) holding these records; fields at defaults are left out."""

    def entries(records: Iterable[Any], entry_type: type[_Entry]) -> list[Any]:
        converted = []
        for record in records:
            fields = msgspec.to_builtins(record)
            del fields["v"], fields["cluster"]
            converted.append(msgspec.to_builtins(msgspec.convert(fields, entry_type)))
        return converted

    document: dict[str, Any] = {"cluster": cluster} if cluster else {}
    if cluster_uid:
        document["cluster_uid"] = cluster_uid
    document["pods"] = entries(sorted(pods, key=lambda p: (p.namespace, p.name)), InventoryPod)
    document["services"] = entries(
        sorted(services, key=lambda s: (s.namespace, s.name)), InventoryService
    )
    document["nodes"] = entries(sorted(nodes, key=lambda n: n.name), InventoryNode)
    return str(yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True))
