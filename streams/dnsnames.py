"""What a DNS name means inside a Kubernetes cluster. Pure.

Given the cluster domain (``cluster.local`` by default):

- ``<svc>.<ns>.svc.<domain>``: a service;
- ``<host>.<svc>.<ns>.svc.<domain>``: one pod of a headless service, by the
  pod's hostname and subdomain, or by its address in dashes (``10-1-0-7``);
- ``a-b-c-d.<ns>.pod.<domain>`` (IPv6: groups joined by dashes): the pod at that IP;
- ``kubernetes.default.svc.<domain>``: the API server;
- any name outside the domain: an external name;
- anything else inside the domain: unknown (counted, not guessed).

A name's form is not its meaning: resolvers append search paths
(``google.com.shop.svc.cluster.local``) and CoreDNS autopath answers such a
name with a CNAME to the name the client meant: the resolver reads the chain and
decides with the objects it knows (docs/streams.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class ServiceName:
    namespace: str
    service: str


@dataclass(frozen=True, slots=True)
class HeadlessPodName:
    namespace: str
    service: str
    hostname: str
    ip: str | None = None
    """The address a dashed hostname spells (``10-1-0-7``), if it spells one."""


@dataclass(frozen=True, slots=True)
class PodIpName:
    namespace: str
    ip: str


@dataclass(frozen=True, slots=True)
class ApiServerName:
    """``kubernetes.default.svc.<domain>``: the API server."""


@dataclass(frozen=True, slots=True)
class ExternalName:
    name: str


@dataclass(frozen=True, slots=True)
class UnknownClusterName:
    name: str


ClusterName = (
    ServiceName | HeadlessPodName | PodIpName | ApiServerName | ExternalName | UnknownClusterName
)


@lru_cache(maxsize=65536)  # names repeat: a node asks for the same few over and over
def classify(qname: str, domain: str = "cluster.local") -> ClusterName:
    """What ``qname`` (lower case, no trailing dot) names in a cluster with ``domain``."""
    suffix = "." + domain
    if not qname.endswith(suffix):
        return UnknownClusterName(qname) if qname == domain else ExternalName(qname)
    labels = qname[: -len(suffix)].split(".")
    if len(labels) == 3 and labels[2] == "svc":
        if labels[:2] == ["kubernetes", "default"]:
            return ApiServerName()
        return ServiceName(namespace=labels[1], service=labels[0])
    if len(labels) == 4 and labels[3] == "svc":
        return HeadlessPodName(
            namespace=labels[2], service=labels[1], hostname=labels[0], ip=_dashed_ip(labels[0])
        )
    if len(labels) == 3 and labels[2] == "pod":
        ip = _dashed_ip(labels[0])
        if ip is not None:
            return PodIpName(namespace=labels[1], ip=ip)
    return UnknownClusterName(qname)


def _dashed_ip(text: str) -> str | None:
    """``10-1-0-7`` -> ``10.1.0.7``; ``fd00--a`` -> ``fd00::a``; None if neither."""
    for candidate in (text.replace("-", "."), text.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None
