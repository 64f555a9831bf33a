"""The lab's state file, ``<state dir>/lab.json``: what is up, for people and programs.

``callmap lab up`` writes it once everything is ready and rewrites it after
every change (release, churn). Other processes (the end-to-end tests, ``lab
run``) read it to find the node namespaces to capture in, the inventory to
publish, the DNS server and the pids the lab started. Writes are atomic
(temporary file, then rename). The format is documented in ``docs/lab.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from callmap.paths import cache_dir
from lab.errors import LabError

STATE_VERSION = 1
STATE_FILE = "lab.json"


class NodeState(msgspec.Struct, kw_only=True):
    name: str
    netns: str
    """Where ``callmap capture run --netns`` captures for this node."""
    ips: list[str]
    pod_netns: list[str]
    """The namespaces of this node's live pods (host-network pods share ``netns``)."""


class PodState(msgspec.Struct, kw_only=True):
    namespace: str
    name: str
    workload: str
    """``ns/workload``."""
    node: str
    netns: str
    ips: list[str]
    host_network: bool
    created: float
    deleted: float | None = None
    pid: int | None = None
    """Its caller process (None for the DNS server's pod, whose process is ``dns.pid``)."""
    ips_since: float | None = None
    """When it got its IPs, if later than ``created`` (it was Pending until then)."""
    pending: bool = False
    """Created, waiting for its IPs: no namespace, no process yet."""
    status: str | None = None
    """The caller's status file."""


class DnsState(msgspec.Struct, kw_only=True):
    service_ips: list[str]
    """What the pods' resolv.conf names (the kube-dns service)."""
    pod: str
    pod_ips: list[str]
    netns: str
    pid: int
    log: str


class ProcessState(msgspec.Struct, kw_only=True):
    pid: int
    role: str
    """``caller``, ``dns`` or ``internet``."""
    netns: str
    what: str


class KubeState(msgspec.Struct, kw_only=True):
    """The lab's own Kubernetes API server (``lab up --kubernetes``)."""

    server: str
    """Its URL (loopback, a port of its own)."""
    kubeconfig: str
    """An admin kubeconfig with its credentials embedded."""
    directory: str
    """The instance's certificates, etcd data, logs and pid files (``<state dir>/kube``)."""


class LabState(msgspec.Struct, kw_only=True):
    version: int = STATE_VERSION
    name: str
    prefix: str
    """Every namespace, file and table of this lab starts with it."""
    topology: str
    state_dir: str
    cluster: str
    domain: str
    created: float
    released: float | None = None
    """When the calls other than ``before_capture`` began; churn times count from here."""
    churn_done: int = 0
    inventory: str
    fabric_netns: str
    internet_netns: str
    nft_table: str
    dns: DnsState
    nodes: list[NodeState]
    pods: list[PodState]
    processes: list[ProcessState]
    kube: KubeState | None = None
    """Set when the lab is registered in an API server of its own (``--kubernetes``)."""
    member: str | None = None
    """The cluster of a multi-cluster topology this lab is (:mod:`lab.multitopology`)."""

    def live_pods(self) -> list[PodState]:
        return [pod for pod in self.pods if pod.deleted is None]


def default_state_dir(name: str) -> Path:
    """``<callmap cache>/lab/<name>``."""
    return cache_dir() / "lab" / name


def save_state(state: LabState) -> Path:
    path = Path(state.state_dir) / STATE_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_bytes(msgspec.json.format(msgspec.json.encode(state), indent=2) + b"\n")
    os.replace(temporary, path)
    return path


def load_state(state_dir: Path) -> LabState:
    path = state_dir / STATE_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=LabState)
    except FileNotFoundError:
        raise LabError(f"no lab state in {state_dir} (is the lab up?)") from None
    except msgspec.DecodeError as exc:
        raise LabError(f"{path}: not a lab state file: {exc}") from None
