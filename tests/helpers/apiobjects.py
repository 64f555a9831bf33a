"""Objects shaped as the Kubernetes API returns them (decoded JSON), for the pure tests."""

from __future__ import annotations

from typing import Any


def owner(kind: str, name: str, uid: str, api_version: str = "apps/v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod(
    name: str,
    *,
    namespace: str = "shop",
    uid: str | None = None,
    ips: tuple[str, ...] = ("10.1.0.10",),
    node: str | None = "node-a",
    owners: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    phase: str = "Running",
    host_network: bool = False,
    hostname: str | None = None,
    subdomain: str | None = None,
    network_ready: str | None = None,
    start_time: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "qosClass": "BestEffort"}
    if network_ready:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True"},
            {
                "type": "PodReadyToStartContainers",
                "status": "True",
                "lastTransitionTime": network_ready,
            },
        ]
    if start_time:
        status["startTime"] = start_time
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "registry.example/app:1", "resources": {}}],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
    }
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid or f"uid-{namespace}-{name}",
        "resourceVersion": "1",
        "creationTimestamp": "2024-05-01T12:00:00Z",
        "labels": labels if labels is not None else {"app": name.split("-")[0]},
    }
    if owners:
        metadata["ownerReferences"] = owners
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def controller(
    kind: str, name: str, uid: str, *, namespace: str = "shop", owners: list[Any] | None = None
) -> dict[str, Any]:
    """A controller as a metadata-only (PartialObjectMetadata) response has it."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if owners:
        metadata["ownerReferences"] = owners
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}


def service(
    name: str,
    *,
    namespace: str = "shop",
    type: str = "ClusterIP",
    cluster_ips: tuple[str, ...] = ("10.96.4.2",),
    ports: list[dict[str, Any]] | None = None,
    external_name: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type, "selector": {"app": name}}
    if cluster_ips:
        spec["clusterIP"] = cluster_ips[0]
        spec["clusterIPs"] = list(cluster_ips)
    if ports is not None:
        spec["ports"] = ports
    if external_name:
        spec["externalName"] = external_name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"svc-{name}",
            "creationTimestamp": "2024-05-01T12:00:00Z",
        },
        "spec": spec,
    }


def endpoint_slice(
    name: str, service_name: str | None, pods: list[str], *, namespace: str = "shop"
) -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": service_name} if service_name else {}
    endpoints = [
        {
            "addresses": [f"10.1.0.{10 + i}"],
            "conditions": {"ready": i % 2 == 0},
            "targetRef": {"kind": "Pod", "name": pod_name, "namespace": namespace},
        }
        for i, pod_name in enumerate(pods)
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "addressType": "IPv4",
        "endpoints": endpoints,
    }


def node(name: str, *addresses: tuple[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"node-{name}"},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]},
    }
