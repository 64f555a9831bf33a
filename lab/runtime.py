"""Bringing a lab up, releasing its held calls, and reading how its calls fare.

:func:`up` builds the network from the plan (:mod:`lab.netbuild`), starts the
DNS server, the "internet" and one caller per pod, writes the inventory and
the state file, and returns only when every pod listens and every running call
has succeeded at least once. With ``hold=True`` only ``before_capture`` calls
run until :func:`release`, so a test can open long-lived connections, then
start capture, then release the rest. :func:`lab.churn.run_churn` later
changes the running lab; :func:`lab.teardown.down` removes it.

With ``kubernetes=True`` the lab also gets an API server of its own
(:mod:`lab.kubelab`), started while the network is built, and everything the
plan holds is registered there before any pod's process starts, so every
object is older than the traffic it explains.

Files under the state dir: ``lab.json`` (:mod:`lab.state`),
``inventory.yaml``, ``dns/`` (dnsmasq's config, hosts and log), ``nft/`` (each
node's ruleset), ``pods/`` (caller specs), ``status/`` (callers' status),
``logs/``, ``resolv/`` (host-network pods' resolv.conf). Pod namespaces get
``/etc/netns/<netns>/{resolv.conf,hosts}``, which ``ip netns exec`` mounts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.addressing import Plan, PodPlan, plan
from lab.dnszone import build_zone, dnsmasq_conf, external_zone, hosts_file, resolv_conf
from lab.errors import LabError
from lab.inventory import PodLife, inventory_yaml
from lab.kubelab import LabCluster, lab_servers, require_binaries, start_server
from lab.multitopology import load_member
from lab.netbuild import build_commands, nft_ruleset, run_commands, table_name
from lab.processes import ETC_NETNS, caller_argv, lab_namespaces, signal_pids, spawn
from lab.state import (
    DnsState,
    KubeState,
    LabState,
    NodeState,
    PodState,
    ProcessState,
    default_state_dir,
    load_state,
    save_state,
)
from lab.teardown import down
from lab.topologyrecords import DNS_NAMESPACE, DNS_WORKLOAD, Topology
from lab.truth import INTERNET, expected_edges, listen_ports

TOOLS = {"ip": "iproute2", "nft": "nftables", "dnsmasq": "dnsmasq-base", "unshare": "util-linux"}
DEFAULT_READY_TIMEOUT = 45.0


@dataclass(frozen=True, slots=True)
class Lab:
    """A topology's plan and where its files live: the shared helpers of up and churn."""

    topology: Topology
    plan: Plan
    state_dir: Path

    @classmethod
    def load(
        cls, path: str | Path, state_dir: Path | None = None, member: str | None = None
    ) -> Lab:
        """The lab of a topology file (of one cluster, ``member``, of a multi-cluster file)."""
        topology = load_member(path, member)
        return cls(topology, plan(topology), state_dir or default_state_dir(topology.name))

    def file(self, *parts: str) -> Path:
        path = self.state_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def pod_file(self, folder: str, pod: PodPlan, suffix: str) -> Path:
        return self.file(folder, f"{pod.namespace}.{pod.name}{suffix}")

    def write_resolver(self, pod: PodPlan) -> Path | None:
        """The pod's resolv.conf and hosts; a path when it must be mounted by hand."""
        conf = resolv_conf(pod, self.topology.domain, self.plan.dns_ips[:1])
        if pod.host_network:
            path = self.pod_file("resolv", pod, ".conf")
            path.write_text(conf)
            return path
        folder = ETC_NETNS / pod.netns
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text(conf)
        (folder / "hosts").write_text(hosts_file(pod))
        return None

    def start_caller(self, pod: PodPlan, hold: bool) -> PodState:
        ports, datagrams = listen_ports(self.plan), listen_ports(self.plan, "udp")
        status = str(self.pod_file("status", pod, ".json"))
        spec = {
            "pod": pod.key,
            "listen": sorted(ports.get(pod.ref, ())),
            "listen_udp": sorted(datagrams.get(pod.ref, ())),
            "hold": hold,
            "status": status,
            "log": str(self.pod_file("calls", pod, ".jsonl")),
            "calls": [
                {
                    "to": c.to,
                    "port": c.port,
                    "rate": c.rate,
                    "long_lived": c.long_lived,
                    "before_capture": c.before_capture,
                    "family": c.family,
                    "protocol": c.protocol,
                }
                for c in self.topology.calls
                if c.client == pod.ref
            ],
        }
        spec_path = self.pod_file("pods", pod, ".json")
        spec_path.write_text(json.dumps(spec, indent=2))
        resolver = self.write_resolver(pod)
        log = self.pod_file("logs", pod, ".log")
        pid = spawn(pod.netns, caller_argv(spec_path), log, resolv_conf=resolver)
        return pod_state(pod, time.time(), pid, status)

    def apply_nft(self, pods: tuple[PodPlan, ...]) -> None:
        for node in self.plan.nodes:
            path = self.file("nft", f"{node.name}.nft")
            path.write_text(nft_ruleset(self.plan, pods))
            run_commands([("ip", "netns", "exec", node.netns, "nft", "-f", str(path))])

    def write_dns(self, pods: tuple[PodPlan, ...], log_queries: bool) -> Path:
        upstream = self.plan.upstream_dns
        zone = build_zone(self.plan, pods, externals=upstream is None)
        hosts = self.file("dns", "hosts")
        _atomic_write(hosts, zone.hosts_text())
        conf = self.file("dns", "dnsmasq.conf")
        dns_pod = self.dns_pod
        log = self.file("dns", "dnsmasq.log")
        conf.write_text(
            dnsmasq_conf(zone, str(hosts), dns_pod.ips, str(log), log_queries, upstream)
        )
        return conf

    def write_upstream_dns(self, upstream: str) -> Path:
        """The upstream DNS server's files: the externals, NXDOMAIN for the rest."""
        hosts = self.file("dns", "upstream.hosts")
        _atomic_write(hosts, external_zone(self.plan).hosts_text())
        conf = self.file("dns", "upstream.conf")
        log = self.file("dns", "upstream.log")
        conf.write_text(
            dnsmasq_conf(external_zone(self.plan), str(hosts), [upstream], str(log), False)
        )
        return conf

    @property
    def dns_pod(self) -> PodPlan:
        return next(p for p in self.plan.pods if p.ref == f"{DNS_NAMESPACE}/{DNS_WORKLOAD}")

    def write_inventory(self, pods: list[PodState]) -> Path:
        by_key = {p.key: p for p in self.plan.all_pods}
        lives = [pod_life(by_key[f"{p.namespace}/{p.name}"], p) for p in pods]
        path = self.file("inventory.yaml")
        _atomic_write(path, inventory_yaml(self.plan, lives))
        return path


def up(
    topology_path: str | Path,
    state_dir: Path | None = None,
    hold: bool = False,
    timeout: float = DEFAULT_READY_TIMEOUT,
    dns_log: bool = False,
    kubernetes: bool = False,
    member: str | None = None,
) -> LabState:
    """Build and start the lab; return its state once every pod and call works.

    ``member``: build that cluster of a multi-cluster topology (see
    :mod:`lab.multilab`, which also peers the clusters).

    ``kubernetes``: also start an API server of the lab's own and register
    the lab's nodes, workloads, pods, services and EndpointSlices in it.
    Raises LabError (after removing what it built) when something cannot be
    created or the calls do not all succeed within ``timeout`` seconds.
    """
    check_host()
    if kubernetes:
        require_binaries()
    lab = Lab.load(Path(topology_path).resolve(), state_dir, member)
    expected_edges(lab.plan)  # every call must reach something: fail before building
    prefix = lab.topology.prefix
    if lab_namespaces(prefix) or lab.topology.name in lab_servers():
        raise LabError(
            f"lab {lab.topology.name!r} is already up or left over from a crash: "
            f"run `callmap lab down {lab.topology.name}` first"
        )
    shutil.rmtree(lab.state_dir, ignore_errors=True)
    lab.state_dir.mkdir(parents=True)
    try:
        return _build(
            lab, Path(topology_path).resolve(), hold, timeout, dns_log, kubernetes, member
        )
    except BaseException:
        down(lab.topology.name, lab.state_dir)
        raise


def _build(
    lab: Lab,
    topology_path: Path,
    hold: bool,
    timeout: float,
    dns_log: bool,
    kubernetes: bool,
    member: str | None,
) -> LabState:
    the_plan = lab.plan
    kube: KubeState | None = None
    # The API server starts while the network is built; leaving this block waits for it.
    with ThreadPoolExecutor(1, thread_name_prefix="lab-kube") as pool:
        server = pool.submit(start_server, lab.topology.name, lab.state_dir) if kubernetes else None
        run_commands(build_commands(the_plan))
        lab.apply_nft(the_plan.pods)
        if server is not None:
            kube = server.result()
            with LabCluster(kube) as cluster:
                cluster.register(the_plan, the_plan.pods, time.time())
    dns_pod = lab.dns_pod
    conf = lab.write_dns(the_plan.pods, dns_log)
    log = lab.file("logs", "dnsmasq.log")
    dns_pid = spawn(dns_pod.netns, ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"], log)
    processes = [ProcessState(pid=dns_pid, role="dns", netns=dns_pod.netns, what=dns_pod.key)]
    if the_plan.upstream_dns is not None:
        upstream_conf = lab.write_upstream_dns(the_plan.upstream_dns)
        upstream_pid = spawn(
            the_plan.internet_netns,
            ["dnsmasq", "--keep-in-foreground", f"--conf-file={upstream_conf}"],
            lab.file("logs", "upstream-dns.log"),
        )
        processes.append(
            ProcessState(
                pid=upstream_pid,
                role="dns-upstream",
                netns=the_plan.internet_netns,
                what="upstream",
            )
        )
    internet_spec = lab.file("pods", "internet.json")
    internet = {
        "pod": "internet",
        "listen": sorted(listen_ports(the_plan).get(INTERNET, ())),
        "listen_udp": sorted(listen_ports(the_plan, "udp").get(INTERNET, ())),
    }
    internet_spec.write_text(json.dumps(internet))
    internet_pid = spawn(
        the_plan.internet_netns, caller_argv(internet_spec), lab.file("logs", "internet.log")
    )
    processes.append(
        ProcessState(
            pid=internet_pid, role="internet", netns=the_plan.internet_netns, what="internet"
        )
    )
    now = time.time()
    pods = [pod_state(dns_pod, now, dns_pid)]
    for pod in the_plan.pods:
        if pod is dns_pod:
            continue
        started = lab.start_caller(pod, hold)
        pods.append(started)
        processes.append(
            ProcessState(pid=started.pid or 0, role="caller", netns=pod.netns, what=pod.key)
        )
    state = LabState(
        name=lab.topology.name,
        prefix=lab.topology.prefix,
        topology=str(topology_path),
        state_dir=str(lab.state_dir),
        cluster=lab.topology.cluster,
        domain=lab.topology.domain,
        created=now,
        released=None if hold else now,
        inventory=str(lab.write_inventory(pods)),
        fabric_netns=the_plan.fabric_netns,
        internet_netns=the_plan.internet_netns,
        nft_table=table_name(the_plan),
        dns=DnsState(
            service_ips=list(the_plan.dns_ips),
            pod=dns_pod.key,
            pod_ips=list(dns_pod.ips),
            netns=dns_pod.netns,
            pid=dns_pid,
            log=str(lab.file("dns", "dnsmasq.log")),
        ),
        nodes=node_states(lab, pods),
        pods=pods,
        processes=processes,
        kube=kube,
        member=member,
    )
    save_state(state)
    wait_ready(state, timeout)
    return state


def pod_life(plan: PodPlan, pod: PodState) -> PodLife:
    """A pod of the plan and its life so far, from the lab's state."""
    return PodLife(plan, pod.created, pod.deleted, pod.ips_since, pod.pending)


def pod_state(pod: PodPlan, created: float, pid: int, status: str | None = None) -> PodState:
    """The state of a pod of the plan whose process is ``pid``."""
    return PodState(
        namespace=pod.namespace,
        name=pod.name,
        workload=pod.ref,
        node=pod.node,
        netns=pod.netns,
        ips=list(pod.ips),
        host_network=pod.host_network,
        created=created,
        pid=pid,
        status=status,
    )


def node_states(lab: Lab, pods: list[PodState]) -> list[NodeState]:
    return [
        NodeState(
            name=node.name,
            netns=node.netns,
            ips=list(node.ips),
            pod_netns=[
                p.netns
                for p in pods
                if p.node == node.name and p.deleted is None and not p.host_network
            ],
        )
        for node in lab.plan.nodes
    ]


def release(state_dir: Path) -> LabState:
    """Start the held calls (SIGUSR1 to every caller); churn times count from now."""
    state = load_state(state_dir)
    if state.released is None:
        signal_pids((p.pid for p in state.processes if p.role == "caller"), signal.SIGUSR1)
        state.released = time.time()
        save_state(state)
    return state


def call_report(state: LabState) -> list[dict[str, Any]]:
    """Each live pod's caller status (what its status file says), in pod order."""
    reports = []
    for pod in state.live_pods():
        if pod.status is None:
            continue
        try:
            report = json.loads(Path(pod.status).read_text())
        except (OSError, ValueError):
            report = {"pod": f"{pod.namespace}/{pod.name}", "listening": False, "calls": []}
        reports.append(report)
    return reports


def wait_ready(state: LabState, timeout: float) -> None:
    """Wait until every live pod listens and each of its running calls succeeded once."""
    deadline = time.monotonic() + timeout
    while True:
        problems = _not_ready(state)
        if not problems:
            return
        if time.monotonic() > deadline:
            raise LabError("the lab did not become ready:\n  " + "\n  ".join(problems[:20]))
        time.sleep(0.25)


def _not_ready(state: LabState) -> list[str]:
    problems = []
    for report in call_report(state):
        if not report.get("listening"):
            problems.append(f"{report['pod']}: not listening yet")
            continue
        for call in report.get("calls", []):
            if (report.get("released") or call.get("before_capture", False)) and call["ok"] < 1:
                problems.append(
                    f"{report['pod']} -> {call['to']}:{call['port']}: {call['failed']} failed, "
                    f"last error {call['last_error']}"
                )
    return problems


def check_host() -> None:
    """The lab needs root and a few Debian packages."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, nftables)")
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing tools; install the Debian packages: {' '.join(missing)}")


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def reload_dns(state: LabState) -> None:
    """Make dnsmasq re-read its hosts file (after churn)."""
    signal_pids([state.dns.pid], signal.SIGHUP)


def nft_list(netns: str) -> str:
    """The live ruleset of a namespace (for status and tests)."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout
