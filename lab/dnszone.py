"""The lab's DNS data, and how a pod's resolver walks its search path.

Pure: :func:`build_zone` turns the plan's live pods of one churn phase into
the records a cluster DNS server would serve:

- ``<svc>.<ns>.svc.<domain>``: the cluster IPs (ClusterIP), the live pods' IPs
  (Headless), or a CNAME to the target (ExternalName);
- ``<hostname>.<svc>.<ns>.svc.<domain>``: a StatefulSet pod behind a headless
  service;
- ``<a-b-c-d>.<ns>.pod.<domain>``: every pod's IPv4 address;
- each external name: its addresses.

:meth:`Zone.hosts_text` and :meth:`Zone.cname_lines` render it for dnsmasq;
:func:`search_names` and :meth:`Zone.lookup` mirror glibc's resolver (search
list, ``ndots:5``) so that the truth resolves names exactly as the pods do.
:func:`resolv_conf` and :func:`hosts_file` are each pod's resolver files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lab.addressing import Plan, PodPlan

NDOTS = 5
TTL = 30
"""Seconds; CoreDNS's default for cluster records."""


@dataclass(frozen=True, slots=True)
class Zone:
    domain: str
    addresses: Mapping[str, tuple[str, ...]]
    """Name -> A and AAAA values, in a stable order."""
    cnames: Mapping[str, str]
    """Name -> CNAME target."""

    def lookup(self, name: str) -> tuple[str, ...] | None:
        """The addresses at the end of ``name``'s CNAME chain; None for NXDOMAIN."""
        seen: set[str] = set()
        while name in self.cnames and name not in seen:
            seen.add(name)
            name = self.cnames[name]
        return self.addresses.get(name)

    def exists(self, name: str) -> bool:
        return name in self.addresses or name in self.cnames

    def hosts_text(self) -> str:
        """A hosts file for dnsmasq's ``addn-hosts``: one ``address name`` line per record."""
        lines = [f"{ip} {name}" for name, ips in sorted(self.addresses.items()) for ip in ips]
        return "".join(line + "\n" for line in lines)

    def cname_lines(self) -> list[str]:
        """dnsmasq ``cname=`` option values."""
        return [f"{name},{target}" for name, target in sorted(self.cnames.items())]


def external_zone(plan: Plan) -> Zone:
    """The externals' records alone: what an upstream DNS server answers."""
    addresses = {e.name: tuple(e.ips) for e in plan.topology.externals}
    return Zone(plan.topology.domain, addresses, {})


def build_zone(plan: Plan, pods: Iterable[PodPlan], externals: bool = True) -> Zone:
    """The records of a cluster whose live pods are ``pods``, the externals' included
    unless ``externals`` is False (a cluster DNS server that forwards them upstream)."""
    domain = plan.topology.domain
    live = tuple(pods)
    addresses: dict[str, list[str]] = {}
    cnames: dict[str, str] = {}

    def add(name: str, ips: Iterable[str]) -> None:
        bucket = addresses.setdefault(name, [])
        bucket.extend(ip for ip in ips if ip not in bucket)

    for service in plan.services:
        name = f"{service.name}.{service.namespace}.svc.{domain}"
        if service.type == "ExternalName" and service.external_name:
            cnames[name] = service.external_name
        elif service.type == "ClusterIP":
            add(name, service.cluster_ips)
        else:
            backends = [p for p in live if p.ref in service.workloads]
            if backends:
                add(name, (ip for pod in backends for ip in pod.ips))
    for pod in live:
        if pod.hostname and pod.subdomain:
            add(f"{pod.hostname}.{pod.subdomain}.{pod.namespace}.svc.{domain}", pod.ips)
        if not pod.host_network:
            v4 = [ip for ip in pod.ips if ipaddress.ip_address(ip).version == 4]
            for ip in v4:
                add(f"{ip.replace('.', '-')}.{pod.namespace}.pod.{domain}", [ip])
    for imported in plan.imports:
        add(imported.name, (imported.ip,))
    if externals:
        for external in plan.topology.externals:
            add(external.name, external.ips)
    return Zone(domain, {k: tuple(v) for k, v in addresses.items()}, cnames)


def search_list(namespace: str, domain: str) -> tuple[str, ...]:
    """The search path Kubernetes writes into a pod's resolv.conf."""
    return (f"{namespace}.svc.{domain}", f"svc.{domain}", domain)


def search_names(name: str, namespace: str, domain: str) -> list[str]:
    """The names glibc asks for, in order, with ``ndots:5`` and the pod's search list."""
    name = name.rstrip(".").lower()
    expanded = [f"{name}.{suffix}" for suffix in search_list(namespace, domain)]
    return [name, *expanded] if name.count(".") >= NDOTS else [*expanded, name]


def first_match(zone: Zone, name: str, namespace: str) -> str | None:
    """The first name of the search walk that exists (what the pod ends up connecting to)."""
    return next((n for n in search_names(name, namespace, zone.domain) if zone.exists(n)), None)


def resolv_conf(pod: PodPlan, domain: str, nameservers: Iterable[str]) -> str:
    """The pod's resolv.conf, as the kubelet writes it for ``dnsPolicy: ClusterFirst``."""
    lines = [f"search {' '.join(search_list(pod.namespace, domain))}"]
    lines += [f"nameserver {ip}" for ip in nameservers]
    lines.append("options ndots:5" + (" use-vc" if pod.dns_tcp else ""))
    return "\n".join(lines) + "\n"


def hosts_file(pod: PodPlan) -> str:
    """The pod's /etc/hosts, as the kubelet writes it."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if not pod.host_network:
        lines += [f"{ip}\t{pod.name}" for ip in pod.ips]
    return "\n".join(lines) + "\n"


def dnsmasq_conf(
    zone: Zone,
    hosts_path: str,
    listen: Iterable[str],
    log_path: str,
    log_queries: bool,
    upstream: str | None = None,
) -> str:
    """dnsmasq's configuration: authoritative for everything it knows, NXDOMAIN for the rest.

    Without ``upstream``, ``local=/#/``: an unknown name (a search-path
    suffix, a typo) gets NXDOMAIN, as from a real cluster's DNS. With it, only
    the cluster domain is answered here (unknown names there get NXDOMAIN)
    and every other name is forwarded to ``upstream``, as CoreDNS's
    ``forward . /etc/resolv.conf`` does; the upstream's answers come to the
    DNS server's own address. Answers carry the cluster TTL. Without EDNS,
    an answer over 512 bytes comes truncated over UDP and the client's
    resolver asks again over TCP.
    """
    scope = [f"local=/{zone.domain}/", f"server={upstream}"] if upstream else ["local=/#/"]
    lines = [
        "no-resolv",
        "no-hosts",
        *scope,
        f"addn-hosts={hosts_path}",
        f"local-ttl={TTL}",
        "bind-interfaces",
        f"listen-address={','.join(listen)}",
        "user=root",
        "pid-file=",
        f"log-facility={log_path}",
        *(f"cname={line}" for line in zone.cname_lines()),
    ]
    if log_queries:
        lines.append("log-queries")
    return "\n".join(lines) + "\n"
