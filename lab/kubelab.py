"""The lab's own Kubernetes API server, and the lab written into it (``--kubernetes``).

:func:`start_server` runs a kube-apiserver and etcd
(:class:`devtools.kube.DevKube`) for one lab alone, in ``<state dir>/kube``
on a free loopback port, with the lab's service ranges as its service CIDRs
(so every cluster IP of the plan is valid there, IPv6 too). One server per
lab: two labs whose topologies share namespace names never meet, and a lab's
objects go with its server.

:class:`LabCluster` writes the plan into it (:mod:`lab.kubeobjects`), as
controllers and kubelets would, and performs churn there: the victim Pod is
deleted, the replacement created (a new uid, the victim's IPs) and the
EndpointSlices follow. ``callmap watch --kubeconfig <state dir>/kube/kubeconfig``
then sees the lab through the real list-and-watch path.

Teardown: the instance directory holds a file naming its lab
(:data:`LAB_MARKER`); :func:`stop_servers` stops the server under the state
directory and any other kube-apiserver or etcd whose instance directory names
the lab (found from ``/proc``, for a lab whose state directory is not the
default one), each by the pid it recorded, or by the pid found.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from callmap.errors import CallmapError
from devtools.kube import DevKube, binaries_built
from devtools.process import free_port
from lab.addressing import Plan, PodPlan
from lab.errors import LabError
from lab.kubeapi import KubeApiError, KubeClient
from lab.kubeobjects import KubeObject, ObjectRef, churn_changes, cluster_objects, with_uids
from lab.processes import stop
from lab.ranges import SERVICE_V4, SERVICE_V6
from lab.state import KubeState

KUBE_DIR = "kube"
LAB_MARKER = "lab-name"
"""A file in the instance directory: the name of the lab it serves."""
SERVICE_CIDRS = (str(SERVICE_V4), str(SERVICE_V6))
_SERVER_BINARIES = ("kube-apiserver", "etcd")
_DIRECTORY_FLAGS = ("--cert-dir=", "--data-dir=")  # <instance>/pki, <instance>/etcd


def require_binaries() -> None:
    """Fail early, and say what to do, when the API server has not been built yet."""
    if not binaries_built():
        raise LabError(
            "--kubernetes needs kube-apiserver and etcd, which are not built on this machine "
            "yet: run `callmap dev kube fetch` once (it builds both with Go from the module "
            "proxy; about 5 minutes), then try again"
        )


def start_server(name: str, state_dir: Path) -> KubeState:
    """Start lab ``name``'s API server; return once it is ready."""
    directory = state_dir / KUBE_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / LAB_MARKER).write_text(name + "\n")  # before anything runs: teardown finds it
    server = DevKube(directory, free_port(), SERVICE_CIDRS)
    try:
        status = server.start()
    except CallmapError as exc:
        raise LabError(f"the lab's Kubernetes API server did not start: {exc}") from None
    return KubeState(
        server=status.server, kubeconfig=str(status.kubeconfig), directory=str(directory)
    )


class LabCluster:
    """The lab's objects in its API server; remembers the uids the server gave them."""

    def __init__(self, kube: KubeState) -> None:
        self.client = KubeClient.for_pki(kube.server, Path(kube.directory) / "pki")
        self._uids: dict[ObjectRef, str] = {}

    def __enter__(self) -> LabCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def register(self, plan: Plan, pods: Iterable[PodPlan], now: float) -> int:
        """Create every object of a cluster whose live pods are ``pods``; how many."""
        objects = cluster_objects(plan, pods, now)
        for obj in objects:
            # The API server makes kube-system and default itself.
            self.create(obj, exist_ok=obj.ref.kind == "Namespace")
        return len(objects)

    def churn(self, plan: Plan, index: int, now: float) -> None:
        """Churn step ``index``: the victim Pod goes, its replacement comes, slices follow."""
        changes = churn_changes(plan, index, now)
        try:
            self.client.delete(changes.delete.path, grace_seconds=0)  # no kubelet to confirm
        except KubeApiError as exc:
            if exc.status != 404:
                raise
        self._uids.pop(changes.delete, None)
        for obj in changes.create:  # controllers first (a ReplicaSet may exist already)
            self.create(obj, exist_ok=obj.ref.kind != "Pod")
        for endpoint_slice in changes.slices:
            endpoints = with_uids(endpoint_slice, self.uid)["endpoints"]
            self.client.merge_patch(endpoint_slice.ref.path, {"endpoints": endpoints})

    def create(self, obj: KubeObject, exist_ok: bool = False) -> str:
        """Create ``obj`` (then write its status); its uid."""
        try:
            created = self.client.create(obj.ref.collection, with_uids(obj, self.uid))
        except KubeApiError as exc:
            if not (exist_ok and exc.status == 409):
                raise LabError(f"cannot register {obj.ref}: {exc}") from None
            created = self.client.get(obj.ref.path)
        uid = str(created["metadata"]["uid"])
        self._uids[obj.ref] = uid
        if obj.status is not None:
            self.client.merge_patch(f"{obj.ref.path}/status", {"status": dict(obj.status)})
        return uid

    def uid(self, ref: ObjectRef) -> str:
        """The uid of an object created earlier (by this process or another)."""
        if ref not in self._uids:
            self._uids[ref] = str(self.client.get(ref.path)["metadata"]["uid"])
        return self._uids[ref]


def lab_servers() -> dict[str, dict[Path, list[int]]]:
    """Running lab API servers and etcds: lab name -> instance directory -> pids."""
    found: dict[str, dict[Path, list[int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        if os.path.basename(argv[0]) not in _SERVER_BINARIES:
            continue
        for arg in argv[1:]:
            if arg.startswith(_DIRECTORY_FLAGS):
                directory = Path(arg.partition("=")[2]).parent
                try:
                    name = (directory / LAB_MARKER).read_text().strip()
                except OSError:
                    break
                found.setdefault(name, {}).setdefault(directory, []).append(int(entry))
                break
    return found


def stop_servers(name: str, state_dir: Path) -> list[str]:
    """Stop lab ``name``'s API servers (normally one); the instance directories stopped."""
    directories = set(lab_servers().get(name, {}))
    if (state_dir / KUBE_DIR / LAB_MARKER).exists():
        directories.add(state_dir / KUBE_DIR)
    stopped = {str(d) for d in directories if DevKube(d).stop()}
    # Started but not recorded (a crash in between): stop the processes found, by pid.
    for directory, pids in lab_servers().get(name, {}).items():
        stop(pids)
        stopped.add(str(directory))
    return sorted(stopped)
