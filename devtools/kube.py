"""A real Kubernetes API server (kube-apiserver and etcd) on loopback, for development and tests.

Both binaries are built once with Go from the Go module proxy into the cache
directory, and every later run reuses them:

- kube-apiserver from ``k8s.io/kubernetes`` (``cmd/kube-apiserver``), in a
  throwaway module that pins each staging module (``k8s.io/api`` and the rest,
  which kubernetes' go.mod requires as ``v0.0.0``) to its ``v0.x`` release.
  1.36, because kubernetes-asyncio 36 is generated from that API.
- etcd from ``go.etcd.io/etcd/server/v3``, at the version kubernetes' go.mod
  pins for its etcd client. Not Debian's ``etcd-server``: bookworm ships 3.4.23,
  and Kubernetes 1.3x supports etcd 3.5 and later only.

Each instance keeps its certificates, etcd data, logs, pid files and an admin
kubeconfig (user ``callmap-admin`` in ``system:masters``, credentials embedded)
in a directory of its own, outside the repository. Starting is idempotent and
returns once ``/readyz`` answers 200; stopping only ever signals the process ids
this module started and recorded. Authorization is RBAC, as in a cluster.

Only the API server runs: no controllers, scheduler or kubelet. Objects stay as
written (a Deployment gets no ReplicaSet, a deleted namespace stays
Terminating), so tests play those parts, as they do a kubelet's status updates.
Hence the ServiceAccount admission plugin is off (nothing creates the
``default`` ServiceAccounts it requires), and the ``kubernetes`` Service has no
endpoints (the server listens on loopback, which endpoints may not name).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from callmap.errors import CallmapError, TemporaryError
from callmap.paths import cache_dir
from devtools.kubepki import ADMIN_USER, KUBELET_CLIENT, CertificateError, ensure_pki
from devtools.process import (
    PidFile,
    accepts_connections,
    alive,
    free_port,
    go_build_once,
    go_built,
    locked,
    run_go,
)

KUBE_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"
DEFAULT_PORT = 6443
SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

_Role = Literal["apiserver", "etcd"]
# What each role's command line contains: an argument ending in its binary's name.
_PROGRAMS: dict[_Role, bytes] = {"apiserver": b"/kube-apiserver\0", "etcd": b"/etcd\0"}


class DevKubeError(CallmapError):
    """The development API server could not be provided."""


@dataclass(frozen=True, slots=True)
class KubeBinaries:
    """The two programs a development API server runs, built into the cache."""

    apiserver: Path
    """``kube-apiserver``."""
    etcd: Path
    """``etcd``, at the version Kubernetes pins for its client."""


def kube_home(version: str = KUBE_VERSION) -> Path:
    return cache_dir() / "kube" / version


def etcd_home(version: str = ETCD_VERSION) -> Path:
    return cache_dir() / "etcd" / version


def binaries_built() -> bool:
    """True if both binaries are in the cache already (nothing to build)."""
    return go_built(kube_home(), "kube-apiserver") and go_built(etcd_home(), "etcd")


def fetch() -> KubeBinaries:
    """Both binaries, building each with Go the first time (minutes, once per machine)."""
    return KubeBinaries(build_apiserver(), build_etcd())


def build_apiserver(version: str = KUBE_VERSION) -> Path:
    return build_components(("kube-apiserver",), version)["kube-apiserver"]


def build_components(commands: tuple[str, ...], version: str = KUBE_VERSION) -> dict[str, Path]:
    """Kubernetes' commands (``kubelet``, ``kubectl``, ...) from ``k8s.io/kubernetes/cmd``.

    They share one build module and Go's build cache, so each after the first
    compiles little of its own; those missing are built in one ``go build``.
    """
    home = kube_home(version)

    def prepare(build: Path) -> str:
        listing = _go(["list", "-m", "-json", f"k8s.io/kubernetes@{version}"], home)
        upstream = Path(json.loads(listing)["GoMod"]).read_text()
        replaces = staging_replaces(upstream, version)
        (build / "go.mod").write_text(render_build_gomod("k8s.io/kubernetes", version, replaces))
        return kube_ldflags(version)

    packages = {command: f"k8s.io/kubernetes/cmd/{command}" for command in commands}
    return go_build_once(home, packages, prepare, error=DevKubeError, needed_for="Kubernetes")


def build_etcd(version: str = ETCD_VERSION) -> Path:
    module = "go.etcd.io/etcd/server/v3"  # its root package is etcd's main

    def prepare(build: Path) -> str:
        (build / "go.mod").write_text(render_build_gomod(module, version, []))
        return "-s -w"

    home, packages = etcd_home(version), {"etcd": module}
    return go_build_once(home, packages, prepare, error=DevKubeError, needed_for="etcd")["etcd"]


def staging_replaces(gomod: str, version: str) -> list[str]:
    """``replace`` lines pinning kubernetes' staging modules to their ``v0.x`` releases.

    Staging modules are those kubernetes requires as ``v0.0.0`` and replaces
    with a directory under ``./staging/``; each is published with the tag
    ``v0.<minor>.<patch>`` matching ``v1.<minor>.<patch>``.
    """
    lines = [line.replace("require", "").split() or [""] for line in gomod.splitlines()]
    staged = {fields[0] for fields in lines if fields[1:3] == ["=>", "./staging/src/" + fields[0]]}
    required = {fields[0] for fields in lines if fields[1:2] == ["v0.0.0"]}
    release = "v0" + version[version.index(".") :]
    return [f"{module} => {module} {release}" for module in sorted(staged & required)]


def render_build_gomod(module: str, version: str, replaces: list[str]) -> str:
    lines = ["module callmap.dev/build", "", "go 1.26", "", f"require {module} {version}", ""]
    if replaces:
        lines += ["replace (", *(f"\t{line}" for line in replaces), ")", ""]
    return "\n".join(lines)


def kube_ldflags(version: str) -> str:
    """What kubernetes' own build stamps in, so ``/version`` says which release this is."""
    major, minor = version.lstrip("v").split(".")[:2]
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor}
    values |= {"gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z"}
    packages = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    flags = [f"-X {package}.{key}={value}" for package in packages for key, value in values.items()]
    return " ".join(["-s", "-w", *flags])


def _go(args: list[str], cwd: Path) -> str:
    return run_go(args, cwd, error=DevKubeError, needed_for="Kubernetes")


def etcd_command(binary: Path, directory: Path, client_port: int, peer_port: int) -> list[str]:
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name=callmap",
        f"--data-dir={directory / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=callmap={peer}",
        "--log-level=warn",
    ]


def apiserver_command(
    binary: Path,
    directory: Path,
    port: int,
    etcd_port: int,
    service_cidrs: tuple[str, ...] = (SERVICE_CIDR,),
    address: str = "127.0.0.1",
    serve_nodes: bool = False,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    """The API server command line; ``serve_nodes`` for a cluster with nodes and controllers,
    ``extra_args`` last (a later flag wins)."""
    pki = directory / "pki"
    if serve_nodes:
        # As kubeadm sets it up: nodes authorized by the Node authorizer and admission,
        # ServiceAccounts admitted (the controllers create them), endpoints reconciled.
        flavour = [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / (KUBELET_CLIENT + '.crt')}",
            f"--kubelet-client-key={pki / (KUBELET_CLIENT + '.key')}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
    else:
        flavour = [
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",  # see the module docstring
            "--endpoint-reconciler-type=none",  # endpoints may not name loopback addresses
        ]
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        *flavour,
        f"--service-cluster-ip-range={','.join(service_cidrs)}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--allow-privileged=true",  # callmap's node agent runs privileged
        "--profiling=false",
        # On SIGTERM, open watches are drained (closed) within this time, as
        # distributions set it; by default they hold the shutdown until the 60 s
        # request timeout, and every client of a restarted server waits that long.
        "--shutdown-watch-termination-grace-period=5s",
        *extra_args,
    ]


def render_kubeconfig(server: str, ca: bytes, cert: bytes, key: bytes) -> str:
    """An admin kubeconfig with every credential embedded, usable from anywhere."""
    cluster = {"server": server, "certificate-authority-data": b64encode(ca).decode()}
    user = {"client-certificate-data": b64encode(cert).decode()}
    user["client-key-data"] = b64encode(key).decode()
    context = {"cluster": "callmap-dev", "user": ADMIN_USER}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "callmap-dev", "cluster": cluster}],
        "users": [{"name": ADMIN_USER, "user": user}],
        "contexts": [{"name": "callmap-dev", "context": context}],
        "current-context": "callmap-dev",
    }
    return str(yaml.safe_dump(config, sort_keys=False))


@dataclass(frozen=True, slots=True)
class KubeStatus:
    """What ``callmap dev kube status`` reports about one API server instance."""

    running: bool
    """True once ``/readyz`` answers 200."""
    pid: int | None
    """The kube-apiserver process this machine's callmap started, if it still runs."""
    etcd_pid: int | None
    """Its etcd's process, likewise."""
    server: str
    """The API server's URL."""
    kubeconfig: Path
    """The admin kubeconfig, credentials embedded (``KUBECONFIG``)."""
    directory: Path
    """Where the instance keeps certificates, etcd data, logs and pid files."""
    detail: str
    """``running``, ``not ready`` or ``not started``, for people."""

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the server's certificate, to verify it with."""
        return self.directory / "pki" / "ca.crt"


@dataclass(frozen=True, slots=True)
class DevKube:
    """One API server instance: its directory and secure port (etcd's ports are its own)."""

    directory: Path
    """The instance's own directory: certificates, etcd data, logs, pid files, kubeconfig."""
    port: int = DEFAULT_PORT
    """The secure (HTTPS) port."""
    service_cidrs: tuple[str, ...] = (SERVICE_CIDR,)
    """Where Services get their cluster IPs: one range, or an IPv4 and an IPv6 one
    (dual stack; the IPv6 range no larger than a /108). The ``kubernetes``
    Service takes the first address of the first range."""
    address: str = "127.0.0.1"
    """Where the API server listens and what it advertises: loopback, or an address
    a cluster's nodes and pods reach it at."""
    serve_nodes: bool = False
    """Run as a real cluster's API server: Node authorization, ServiceAccount
    admission, the ``kubernetes`` Service's endpoints (see ``apiserver_command``)."""
    extra_args: tuple[str, ...] = ()
    """More API server flags, e.g. ``--watch-cache=false`` for a test of the paths
    a cache hides."""

    @classmethod
    def named(cls, name: str = "dev", port: int = DEFAULT_PORT) -> DevKube:
        """The instance ``callmap dev kube --name NAME --port PORT`` means."""
        return cls(cache_dir() / "kube" / "instances" / name, port)

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def status(self) -> KubeStatus:
        pid, etcd_pid = self._pid_file("apiserver").recorded(), self._pid_file("etcd").recorded()
        ready = pid is not None and self._ready()
        detail = "running" if ready else "not started" if pid is None else "not ready"
        return KubeStatus(
            ready, pid, etcd_pid, self.server, self.kubeconfig, self.directory, detail
        )

    def start(self, timeout: float = 180.0) -> KubeStatus:
        """Start etcd and the API server unless they run; return once ``/readyz`` says ok."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds keys
        with locked(self.directory / ".lock"):
            current = self.status()
            if current.running:
                return current
            if current.pid is not None:  # started earlier but not ready yet, or wedged
                return self._wait_ready(current.pid, timeout)
            if accepts_connections(self.port, self.address):
                raise DevKubeError(f"port {self.port} is taken by a process callmap did not start")
            binaries = fetch()
            pki = self.directory / "pki"
            try:
                ensure_pki(pki, self.address)
            except CertificateError as error:
                raise DevKubeError(str(error)) from None
            client_port, peer_port = self._etcd_ports()
            etcd_pid = self._pid_file("etcd").recorded()
            if etcd_pid is None:
                command = etcd_command(binaries.etcd, self.directory, client_port, peer_port)
                etcd_pid = self._spawn("etcd", command)
            self._wait_etcd(etcd_pid, client_port, timeout)
            command = apiserver_command(
                binaries.apiserver,
                self.directory,
                self.port,
                client_port,
                self.service_cidrs,
                self.address,
                self.serve_nodes,
                self.extra_args,
            )
            pid = self._spawn("apiserver", command)
            credentials = (pki / name for name in ("ca.crt", "admin.crt", "admin.key"))
            kubeconfig = render_kubeconfig(
                self.server, *(path.read_bytes() for path in credentials)
            )
            self.kubeconfig.write_text(kubeconfig)
            return self._wait_ready(pid, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the API server, then etcd, if this instance started them; False if neither ran."""
        stopped = [self._pid_file(role).stop(timeout) for role in ("apiserver", "etcd")]
        return any(stopped)

    def restart_apiserver(self, timeout: float = 180.0) -> KubeStatus:
        """Stop the API server (SIGTERM, as a rolling upgrade does) and start it again on
        the same etcd; return once it is ready."""
        self._pid_file("apiserver").stop(timeout)
        return self.start(timeout)

    def _spawn(self, role: _Role, command: list[str]) -> int:
        return self._pid_file(role).spawn(command, self.directory / f"{role}.log")

    def _etcd_ports(self) -> tuple[int, int]:
        """etcd's client and peer ports: chosen once and kept, since etcd's data names them."""
        path = self.directory / "etcd-ports.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            ports = json.loads(path.read_text())
            return int(ports["client"]), int(ports["peer"])
        client, peer = free_port(), free_port()
        path.write_text(json.dumps({"client": client, "peer": peer}))
        return client, peer

    def _wait_etcd(self, pid: int, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._checkalive("etcd", pid)
            answer = _get(f"http://127.0.0.1:{port}/health")
            if answer is not None and json.loads(answer).get("health") == "true":
                return
            time.sleep(0.2)
        raise TemporaryError(f"etcd was not healthy within {timeout:.0f}s", delay=5)

    def _wait_ready(self, pid: int, timeout: float) -> KubeStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._checkalive("apiserver", pid)
            if self._ready():
                return self.status()
            time.sleep(0.5)
        raise TemporaryError(f"kube-apiserver was not ready within {timeout:.0f}s", delay=5)

    def _checkalive(self, role: _Role, pid: int) -> None:
        if not alive(pid):
            self._pid_file(role).forget()
            log = self.directory / f"{role}.log"
            raise DevKubeError(f"{role} exited during start-up; see {log}")

    def _ready(self) -> bool:
        """True once ``/readyz`` answers 200 to the admin (anonymous may be refused early)."""
        pki = self.directory / "pki"
        try:
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        except OSError:  # no certificates yet
            return False
        return _get(f"{self.server}/readyz", context) is not None

    def _pid_file(self, role: _Role) -> PidFile:
        """``<role>.pid``: a pid counts while it runs that binary with this directory's files."""
        marks = (_PROGRAMS[role], str(self.directory).encode())
        return PidFile(self.directory / f"{role}.pid", marks)


def _get(url: str, context: ssl.SSLContext | None = None) -> bytes | None:
    """The body of a 200 answer, else None; never through a proxy (these URLs are loopback)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=3) as answer:
            return bytes(answer.read()) if answer.status == 200 else None
    except OSError:  # refused, TLS errors, HTTP errors (a 500 while starting) alike
        return None
