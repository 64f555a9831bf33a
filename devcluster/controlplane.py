"""The development cluster's control plane, on this machine's side of the fabric.

etcd and kube-apiserver come from :mod:`devtools.kube` (its cluster flavour:
Node authorization, ServiceAccount admission, the ``kubernetes`` Service's
endpoints), listening on the host's fabric address so that nodes and pods reach
it; kube-controller-manager and kube-scheduler run beside it, each with a
client certificate of its own, as kubeadm sets them up (no leader election: one
of each). Every process is recorded and stopped by its pid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devcluster.layout import APISERVER_PORT, HOST_ADDRESS, POD_CIDR, SERVICE_CIDR, ClusterLayout
from devtools.kube import DevKube, build_components, render_kubeconfig
from devtools.kubepki import ensure_certificate
from devtools.process import PidFile, free_port

CONTROLLERS = ("kube-controller-manager", "kube-scheduler")
NODE_COMMANDS = ("kubelet", "kube-proxy", "kubectl")


def api_server(layout: ClusterLayout) -> DevKube:
    return DevKube(
        layout.directory / "apiserver",
        APISERVER_PORT,
        (SERVICE_CIDR,),
        address=HOST_ADDRESS,
        serve_nodes=True,
    )


def build_binaries() -> dict[str, Path]:
    """Every Kubernetes command the cluster runs, built once (see ``build_components``)."""
    return build_components((*CONTROLLERS, *NODE_COMMANDS))


def controller_command(
    name: str, binary: Path, layout: ClusterLayout, kubeconfig: Path, pki: Path
) -> list[str]:
    common = [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={free_port()}",
        "--v=1",
    ]
    if name == "kube-scheduler":
        return common
    return [
        *common,
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--cluster-cidr={POD_CIDR}",
        "--allocate-node-cidrs=false",  # each node's CNI configuration holds its range
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--controllers=*,bootstrapsigner,tokencleaner",
    ]


@dataclass(frozen=True, slots=True)
class ControlPlane:
    layout: ClusterLayout

    @property
    def api(self) -> DevKube:
        return api_server(self.layout)

    @property
    def pki(self) -> Path:
        return self.api.directory / "pki"

    def _pid_file(self, name: str) -> PidFile:
        marks = (f"/{name}\0".encode(), str(self.layout.directory).encode())
        return PidFile(self.layout.directory / "controlplane" / f"{name}.pid", marks)

    def start(self, binaries: dict[str, Path]) -> None:
        self.api.start()
        directory = self.layout.directory / "controlplane"
        directory.mkdir(parents=True, exist_ok=True)
        ca = (self.pki / "ca.crt").read_bytes()
        for name in CONTROLLERS:
            if self._pid_file(name).recorded() is not None:
                continue
            user = name.replace("kube-", "system:kube-")  # the users RBAC's defaults bind
            cert, key = ensure_certificate(self.pki, name, {"CN": user})
            kubeconfig = directory / f"{name}.kubeconfig"
            kubeconfig.write_text(
                render_kubeconfig(self.layout.apiserver, ca, cert.read_bytes(), key.read_bytes())
            )
            command = controller_command(name, binaries[name], self.layout, kubeconfig, self.pki)
            self._pid_file(name).spawn(command, directory / f"{name}.log")

    def running(self) -> dict[str, int | None]:
        pids = {name: self._pid_file(name).recorded() for name in CONTROLLERS}
        return {"kube-apiserver": self.api.status().pid, **pids}

    def stop(self) -> bool:
        stopped = [self._pid_file(name).stop(timeout=10) for name in CONTROLLERS]
        return self.api.stop() or any(stopped)
