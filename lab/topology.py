"""Topology files: parsed and validated into frozen dataclasses.

A topology (format in ``docs/lab.md``) names workloads, services, external
names, the calls between them and churn over time. :func:`parse_topology`
accepts the YAML text or an already loaded mapping and either returns a
:class:`Topology` or raises :class:`~lab.errors.TopologyError` whose message
names the bad key as a path (``workloads[2].service.ports[0]``). Validation
covers structure and references (a call's ``from``, a churn's ``delete``, a
service's ``selects``); whether a call's ``to`` resolves is checked against
the DNS zone by :func:`lab.truth.expected_edges`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lab.errors import TopologyError
from lab.fields import (
    DNS_NAME,
    dns_name,
    external_ip,
    flag,
    is_address,
    keys,
    label,
    list_of,
    literal_ip,
    mapping,
    port,
    ports,
    ref,
    str_item,
    string,
    unique,
    whole,
)
from lab.topologyrecords import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    DNS_WORKLOAD,
    KINDS,
    TRANSPORTS,
    Call,
    Churn,
    External,
    Service,
    Topology,
    Workload,
    WorkloadService,
)

LAB_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_LAB_NAME = 20


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(f"{path}: {exc.strerror}") from None
    return parse_topology(text, source=str(path))


def load_document(document: str | Mapping[str, Any], source: str) -> object:
    """YAML text loaded, or an already loaded mapping as it is."""
    if not isinstance(document, str):
        return document
    try:
        return yaml.safe_load(document)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source}: not valid YAML: {exc}") from None


def parse_topology(document: str | Mapping[str, Any], source: str = "topology") -> Topology:
    """Validate a topology given as YAML text or a loaded mapping."""
    root = mapping(load_document(document, source), source)
    if "clusters" in root:
        raise TopologyError(
            f"{source}: declares several clusters; only `callmap lab run` and `lab truth` "
            "take a multi-cluster topology"
        )
    keys(
        root,
        source,
        {"name"},
        {
            "cluster",
            "domain",
            "nodes",
            "dual_stack",
            "workloads",
            "services",
            "externals",
            "calls",
            "churn",
            "dns_upstream",
        },
    )
    name = string(root, "name", source)
    if not LAB_NAME.match(name) or len(name) > MAX_LAB_NAME:
        raise TopologyError(
            f"{source}.name: {name!r} must be lower-case letters, digits and single dashes, "
            f"start with a letter, at most {MAX_LAB_NAME} characters"
        )
    nodes = tuple(
        label(v, f"{source}.nodes[{i}]")
        for i, v in enumerate(list_of(root, "nodes", source, ["node-a"]))
    )
    if not nodes:
        raise TopologyError(f"{source}.nodes: needs at least one node")
    unique(nodes, f"{source}.nodes")
    domain = string(root, "domain", source, "cluster.local").strip(".").lower()
    if not DNS_NAME.match(domain):
        raise TopologyError(f"{source}.domain: {domain!r} is not a DNS name")
    topology = Topology(
        name=name,
        cluster=string(root, "cluster", source, name),
        domain=domain,
        nodes=nodes,
        dual_stack=flag(root, "dual_stack", source),
        dns_upstream=flag(root, "dns_upstream", source),
        workloads=tuple(
            _workload(v, f"{source}.workloads[{i}]", nodes)
            for i, v in enumerate(list_of(root, "workloads", source, []))
        ),
        services=tuple(
            _service(v, f"{source}.services[{i}]")
            for i, v in enumerate(list_of(root, "services", source, []))
        ),
        externals=tuple(
            _external(v, f"{source}.externals[{i}]", domain)
            for i, v in enumerate(list_of(root, "externals", source, []))
        ),
        calls=tuple(
            _call(v, f"{source}.calls[{i}]")
            for i, v in enumerate(list_of(root, "calls", source, []))
        ),
        churn=tuple(
            sorted(
                (
                    _churn(v, f"{source}.churn[{i}]")
                    for i, v in enumerate(list_of(root, "churn", source, []))
                ),
                key=lambda c: c.at,
            )
        ),
    )
    _check_references(topology, source)
    return topology


def _workload(value: object, where: str, nodes: tuple[str, ...]) -> Workload:
    raw = mapping(value, where)
    keys(
        raw,
        where,
        {"namespace", "name"},
        {"kind", "replicas", "labels", "service", "host_network", "node", "ports", "dns_tcp"},
    )
    name = label(raw["name"], f"{where}.name")
    kind = string(raw, "kind", where, "Deployment")
    if kind not in KINDS:
        raise TopologyError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    replicas = whole(raw, "replicas", where, 1, low=0, high=200)
    if kind == "Pod" and replicas != 1:
        raise TopologyError(f"{where}.replicas: a bare Pod has exactly one replica")
    node = raw.get("node")
    if node is not None and node not in nodes:
        raise TopologyError(f"{where}.node: {node!r} is not one of the nodes {list(nodes)}")
    service = None
    if "service" in raw:
        svc_where = f"{where}.service"
        svc = mapping(raw["service"], svc_where)
        keys(svc, svc_where, set(), {"name", "ports", "udp_ports", "headless", "export"})
        tcp, udp = _service_ports(svc, svc_where, required=True)
        service = WorkloadService(
            name=label(svc.get("name", name), f"{svc_where}.name"),
            ports=tcp,
            headless=flag(svc, "headless", svc_where),
            export=flag(svc, "export", svc_where),
            udp_ports=udp,
        )
    labels = raw.get("labels", {"app": name})
    labels_map = mapping(labels, f"{where}.labels")
    for key, text in labels_map.items():
        if not isinstance(key, str) or not isinstance(text, str):
            raise TopologyError(f"{where}.labels: {key!r}: keys and values must be strings")
    return Workload(
        namespace=label(raw["namespace"], f"{where}.namespace"),
        name=name,
        kind=kind,
        replicas=replicas,
        labels=dict(labels_map),
        service=service,
        host_network=flag(raw, "host_network", where),
        node=node,
        ports=ports(raw, "ports", where),
        dns_tcp=flag(raw, "dns_tcp", where),
    )


def _service(value: object, where: str) -> Service:
    raw = mapping(value, where)
    keys(
        raw,
        where,
        {"namespace", "name"},
        {"ports", "udp_ports", "selects", "headless", "external_name", "export"},
    )
    namespace = label(raw["namespace"], f"{where}.namespace")
    external = raw.get("external_name")
    selects = tuple(
        str_item(v, f"{where}.selects[{i}]")
        for i, v in enumerate(list_of(raw, "selects", where, []))
    )
    if (external is None) == (not selects):
        raise TopologyError(f"{where}: needs exactly one of 'selects' and 'external_name'")
    if external is not None:
        external = dns_name(external, f"{where}.external_name")
    tcp, udp = _service_ports(raw, where, required=external is None)
    return Service(
        namespace=namespace,
        name=label(raw["name"], f"{where}.name"),
        ports=tcp,
        selects=tuple(s if "/" in s else f"{namespace}/{s}" for s in selects),
        headless=flag(raw, "headless", where),
        external_name=external,
        export=flag(raw, "export", where),
        udp_ports=udp,
    )


def _service_ports(
    raw: Mapping[str, Any], where: str, required: bool
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A service's TCP ``ports`` and ``udp_ports``: at least one of them when ``required``
    (a port number may be in both: a Service may serve one port over both protocols)."""
    tcp, udp = ports(raw, "ports", where), ports(raw, "udp_ports", where)
    if required and not tcp and not udp:
        raise TopologyError(f"{where}.ports: needs at least one port (or udp_ports)")
    return tcp, udp


def _external(value: object, where: str, domain: str) -> External:
    raw = mapping(value, where)
    keys(raw, where, {"name", "ips"}, {"ports", "udp_ports"})
    name = dns_name(raw["name"], f"{where}.name")
    if name == domain or name.endswith("." + domain):
        raise TopologyError(f"{where}.name: {name!r} is inside the cluster domain {domain!r}")
    ips = list_of(raw, "ips", where, [])
    if not ips:
        raise TopologyError(f"{where}.ips: needs at least one address")
    return External(
        name=name,
        ips=tuple(external_ip(v, f"{where}.ips[{i}]") for i, v in enumerate(ips)),
        ports=ports(raw, "ports", where),
        udp_ports=ports(raw, "udp_ports", where),
    )


def _call(value: object, where: str) -> Call:
    raw = mapping(value, where)
    optional = {"rate", "long_lived", "before_capture", "family", "protocol"}
    keys(raw, where, {"from", "to", "port"}, optional)
    rate = raw.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 100:
        raise TopologyError(
            f"{where}.rate: {rate!r} must be a number of calls per second in (0, 100]"
        )
    family = str(raw.get("family", "any"))
    if family not in ("any", "4", "6"):
        raise TopologyError(f"{where}.family: {family!r} must be 4, 6 or any")
    protocol = raw.get("protocol", "tcp")
    if protocol not in TRANSPORTS:
        raise TopologyError(f"{where}.protocol: {protocol!r} must be tcp or udp")
    long_lived = flag(raw, "long_lived", where)
    if long_lived and protocol == "udp":
        raise TopologyError(f"{where}.long_lived: a udp call is one datagram and its answer")
    before = flag(raw, "before_capture", where)
    if before and not long_lived:
        raise TopologyError(
            f"{where}.before_capture: only a long_lived call can open before capture"
        )
    to = string(raw, "to", where).strip().rstrip(".").lower()
    if not to:
        raise TopologyError(f"{where}.to: must not be empty")
    if is_address(to):
        to = literal_ip(to, f"{where}.to")
    return Call(
        client=ref(raw["from"], f"{where}.from"),
        to=to,
        port=port(raw["port"], f"{where}.port"),
        rate=float(rate),
        long_lived=long_lived,
        before_capture=before,
        family=family,  # type: ignore[arg-type]  # checked above
        protocol=protocol,
    )


def _churn(value: object, where: str) -> Churn:
    raw = mapping(value, where)
    keys(raw, where, {"at", "delete"}, {"ip_to", "pod", "pending_for"})
    at = raw["at"]
    if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
        raise TopologyError(f"{where}.at: {at!r} must be seconds (a number of at least 0)")
    ip_to = raw.get("ip_to")
    pod = raw.get("pod")
    pending = raw.get("pending_for", 0)
    if isinstance(pending, bool) or not isinstance(pending, int | float) or not 0 <= pending <= at:
        raise TopologyError(
            f"{where}.pending_for: {pending!r} must be seconds, at least 0 and at most `at`"
        )
    if pending and ip_to is None:
        raise TopologyError(f"{where}.pending_for: needs ip_to, the pod that waits for the IP")
    return Churn(
        at=float(at),
        delete=ref(raw["delete"], f"{where}.delete"),
        ip_to=None if ip_to is None else ref(ip_to, f"{where}.ip_to"),
        pod=None if pod is None else str_item(pod, f"{where}.pod"),
        pending_for=float(pending),
    )


def _check_references(topology: Topology, source: str) -> None:
    refs = {w.ref: w for w in topology.workloads}
    unique([w.ref for w in topology.workloads], f"{source}.workloads")
    services = [f"{w.namespace}/{w.service.name}" for w in topology.workloads if w.service]
    services += [f"{s.namespace}/{s.name}" for s in topology.services]
    unique(services, f"{source}: service")
    reserved = {f"{DNS_NAMESPACE}/{DNS_WORKLOAD}", f"{DNS_NAMESPACE}/{DNS_SERVICE}"}
    for name in [*refs, *services]:
        if name in reserved:
            raise TopologyError(
                f"{source}: {name!r} is the lab's own DNS server; pick another name"
            )
    unique([e.name for e in topology.externals], f"{source}.externals")
    external_names = {e.name for e in topology.externals}
    for i, svc in enumerate(topology.services):
        for selected in svc.selects:
            if selected not in refs:
                raise TopologyError(f"{source}.services[{i}].selects: no workload {selected!r}")
        if svc.external_name and svc.external_name not in external_names:
            raise TopologyError(
                f"{source}.services[{i}].external_name: {svc.external_name!r} is not in externals"
            )
    for i, call in enumerate(topology.calls):
        if call.client not in refs:
            raise TopologyError(f"{source}.calls[{i}].from: no workload {call.client!r}")
        if call.family == "6" and not topology.dual_stack:
            raise TopologyError(f"{source}.calls[{i}].family: IPv6 calls need dual_stack: true")
    for i, churn in enumerate(topology.churn):
        pairs: list[tuple[str, str | None]] = [("delete", churn.delete), ("ip_to", churn.ip_to)]
        for key, target in pairs:
            if target is None:
                continue
            if target not in refs:
                raise TopologyError(f"{source}.churn[{i}].{key}: no workload {target!r}")
            if refs[target].host_network or refs[target].kind == "DaemonSet":
                raise TopologyError(
                    f"{source}.churn[{i}].{key}: {target!r} is a DaemonSet or host-network workload"
                )
