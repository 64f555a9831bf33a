"""A real Kubernetes API server (kube-apiserver and etcd) on loopback, for development and tests.

Both binaries are built once with Go from the Go module proxy into the cache
directory and reused by every later run, so no release tarball or container
registry is needed:

- kube-apiserver from ``k8s.io/kubernetes`` (``cmd/kube-apiserver``), in a
  throwaway module that pins every staging module (``k8s.io/api`` and so on,
  required as ``v0.0.0`` by kubernetes' own go.mod) to its matching ``v0.x``
  release. 1.36 because kubernetes-asyncio 36 is generated from its API.
- etcd from ``go.etcd.io/etcd/server/v3``, at the version kubernetes' go.mod
  pins for its etcd client. Not Debian's ``etcd-server``: bookworm ships 3.4.23,
  while Kubernetes 1.3x supports etcd 3.5 and later (and needs 3.4.31 or later
  even for watch progress notifications).

Each instance keeps its certificates, etcd data, logs, pid files and an admin
kubeconfig (user ``callmap-admin`` in ``system:masters``, client certificate
embedded) in a directory of its own, outside the repository. Starting is
idempotent and returns once ``/readyz`` answers 200; stopping only ever signals
the process ids this module started and recorded.

Only the API server runs: no controller-manager, scheduler or kubelet. Objects
stay as they were written (a Deployment gets no ReplicaSet, a namespace being
deleted stays Terminating), so tests play those parts themselves, as they do
with a pod's status. For the same reason the ServiceAccount admission plugin is
off (nothing creates the ``default`` ServiceAccounts it would require), and
the ``kubernetes`` Service has no endpoints (the server only listens on
loopback, which endpoints may not name). Authorization is RBAC, as in a cluster.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from callmap.devkafka import free_port
from callmap.errors import CallmapError, TemporaryError
from callmap.paths import cache_dir

KUBE_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"
DEFAULT_PORT = 6443
SERVICE_CIDR = "10.96.0.0/16"
ADMIN_USER = "callmap-admin"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


class DevKubeError(CallmapError):
    """The development API server could not be provided."""


@dataclass(frozen=True, slots=True)
class KubeBinaries:
    apiserver: Path
    etcd: Path


def kube_home(version: str = KUBE_VERSION) -> Path:
    return cache_dir() / "kube" / version


def etcd_home(version: str = ETCD_VERSION) -> Path:
    return cache_dir() / "etcd" / version


def binaries_built() -> bool:
    """True if both binaries are in the cache already (nothing to build)."""
    return (kube_home() / "built").exists() and (etcd_home() / "built").exists()


def fetch() -> KubeBinaries:
    """Both binaries, building each with Go the first time (minutes, once per machine)."""
    return KubeBinaries(build_apiserver(), build_etcd())


def build_apiserver(version: str = KUBE_VERSION) -> Path:
    def replaces(home: Path) -> list[str]:
        listing = _go(["list", "-m", "-json", f"k8s.io/kubernetes@{version}"], home)
        gomod = Path(json.loads(listing)["GoMod"]).read_text()
        return staging_replaces(gomod, version)

    return _go_build(
        "kube-apiserver",
        kube_home(version),
        "k8s.io/kubernetes",
        version,
        "k8s.io/kubernetes/cmd/kube-apiserver",
        replaces,
        kube_ldflags(version),
    )


def build_etcd(version: str = ETCD_VERSION) -> Path:
    server = "go.etcd.io/etcd/server/v3"
    return _go_build("etcd", etcd_home(version), server, version, server, lambda home: [], "-s -w")


def staging_replaces(gomod: str, version: str) -> list[str]:
    """``replace`` lines pinning kubernetes' staging modules to their ``v0.x`` releases.

    Staging modules are those kubernetes requires as ``v0.0.0`` and replaces
    with a directory under ``./staging/``; each is published with the tag
    ``v0.<minor>.<patch>`` matching ``v1.<minor>.<patch>``.
    """
    staged = {
        line.split()[0]
        for line in gomod.splitlines()
        if "=> ./staging/" in line and not line.startswith("//")
    }
    required = {
        fields[0]
        for fields in (line.replace("require", "").split() for line in gomod.splitlines())
        if len(fields) >= 2 and fields[1] == "v0.0.0"
    }
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
    flags = [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    ]
    return " ".join(["-s", "-w", *flags])


def _go_env(home: Path) -> dict[str, str]:
    go = cache_dir() / "go"
    return {
        **os.environ,
        "GOMODCACHE": str(go / "mod"),
        "GOCACHE": str(go / "build"),
        "GOFLAGS": "-mod=mod -modcacherw -buildvcs=false",
        "GOTOOLCHAIN": "local",  # never fetch another Go: build with the one installed
        "GOWORK": "off",
        "CGO_ENABLED": "0",
    }


def _go(args: list[str], cwd: Path, log: Path | None = None) -> str:
    try:
        result = subprocess.run(
            ["go", *args], cwd=cwd, env=_go_env(cwd), capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise DevKubeError("Go (the `go` command) is needed to build kube-apiserver") from None
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise DevKubeError(f"go {' '.join(args[:2])} failed in {cwd}:\n{tail}")
    return result.stdout


def _go_build(
    name: str,
    home: Path,
    module: str,
    version: str,
    package: str,
    replaces: Callable[[Path], list[str]],
    ldflags: str,
) -> Path:
    binary = home / "bin" / name
    stamp = home / "built"
    if stamp.exists() and binary.exists():
        return binary
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".lock"):
        if stamp.exists() and binary.exists():  # another process built it while we waited
            return binary
        build = home / "build"
        build.mkdir(exist_ok=True)
        (build / "go.mod").write_text(render_build_gomod(module, version, replaces(home)))
        (build / "go.sum").unlink(missing_ok=True)
        started = time.monotonic()
        command = ["build", "-trimpath", "-ldflags", ldflags, "-o", str(binary), package]
        _go(command, build, log=home / "build.log")
        stamp.write_text(json.dumps({"package": package, "seconds": time.monotonic() - started}))
    return binary


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# (file name, subject, extensions) of each certificate, all signed by the instance's CA.
_CA_EXTENSIONS = "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign"
_SERVING_NAMES = (
    "IP:127.0.0.1, IP:10.96.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, "
    "DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
)
_LEAVES = (
    (
        "apiserver",
        {"CN": "kube-apiserver"},
        f"extendedKeyUsage = serverAuth\nsubjectAltName = {_SERVING_NAMES}",
    ),
    ("admin", {"O": "system:masters", "CN": ADMIN_USER}, "extendedKeyUsage = clientAuth"),
)


def render_openssl_config(subject: dict[str, str], extensions: str) -> str:
    names = "\n".join(f"{key} = {value}" for key, value in subject.items())
    leaf = "" if "CA:TRUE" in extensions else "basicConstraints = critical, CA:FALSE\n"
    usage = "" if "keyUsage" in extensions else "keyUsage = critical, digitalSignature\n"
    return (
        f"[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n[dn]\n{names}\n"
        f"[ext]\n{leaf}{usage}{extensions}\n"
    )


def _ensure_pki(pki: Path) -> None:
    """A CA, a serving and an admin client certificate, a service-account key: made once."""
    pki.mkdir(parents=True, exist_ok=True)
    for name, subject, extensions in (("ca", {"CN": "callmap-dev-ca"}, _CA_EXTENSIONS), *_LEAVES):
        if (pki / f"{name}.crt").exists():
            continue
        config = pki / f"{name}.cnf"
        config.write_text(render_openssl_config(subject, extensions))
        signer = [] if name == "ca" else ["-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key")]
        key, cert = str(pki / f"{name}.key"), str(pki / f"{name}.crt")
        request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650"]
        _openssl([*request, *signer, "-keyout", key, "-out", cert, "-config", str(config)])
    if not (pki / "sa.pub").exists():
        key = str(pki / "sa.key")
        _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key])
        _openssl(["pkey", "-in", key, "-pubout", "-out", str(pki / "sa.pub")])


def _openssl(args: list[str]) -> None:
    try:
        result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DevKubeError("the openssl command is needed to make certificates") from None
    if result.returncode != 0:
        raise DevKubeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


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
        "--listen-metrics-urls=",
        "--log-level=warn",
    ]


def apiserver_command(binary: Path, directory: Path, port: int, etcd_port: int) -> list[str]:
    pki = directory / "pki"
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        # Nothing creates the `default` ServiceAccounts this plugin insists on.
        "--disable-admission-plugins=ServiceAccount",
        # Endpoints may not name loopback addresses, and loopback is all we serve on.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",  # callmap's node agent runs privileged
        "--profiling=false",
        f"--cert-dir={pki}",
    ]


def render_kubeconfig(server: str, ca: bytes, cert: bytes, key: bytes) -> str:
    """An admin kubeconfig with every credential embedded, usable from anywhere."""

    def data(pem: bytes) -> str:
        return b64encode(pem).decode("ascii")

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "callmap-dev",
                "cluster": {"server": server, "certificate-authority-data": data(ca)},
            }
        ],
        "users": [
            {
                "name": ADMIN_USER,
                "user": {"client-certificate-data": data(cert), "client-key-data": data(key)},
            }
        ],
        "contexts": [
            {"name": "callmap-dev", "context": {"cluster": "callmap-dev", "user": ADMIN_USER}}
        ],
        "current-context": "callmap-dev",
    }
    return str(yaml.safe_dump(config, sort_keys=False))


@dataclass(frozen=True, slots=True)
class KubeStatus:
    running: bool
    pid: int | None
    etcd_pid: int | None
    server: str
    kubeconfig: Path
    directory: Path
    detail: str


@dataclass(frozen=True, slots=True)
class DevKube:
    """One API server instance: its directory and secure port (etcd's ports are its own)."""

    directory: Path
    port: int = DEFAULT_PORT

    @classmethod
    def named(cls, name: str = "dev", port: int = DEFAULT_PORT) -> DevKube:
        return cls(cache_dir() / "kube" / "instances" / name, port)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def status(self) -> KubeStatus:
        pid, etcd_pid = self._recorded_pid("apiserver"), self._recorded_pid("etcd")
        if pid is None:
            detail = "not started"
        elif not self._ready():
            detail = "not ready"
        else:
            return self._status(True, pid, etcd_pid, "running")
        return self._status(False, pid, etcd_pid, detail)

    def start(self, timeout: float = 180.0) -> KubeStatus:
        """Start etcd and the API server unless they run; return once ``/readyz`` says ok."""
        current = self.status()
        if current.running:
            return current
        if current.pid is not None:  # started earlier but not ready yet, or wedged
            return self._wait_ready(current.pid, current.etcd_pid, timeout)
        if _accepts_connections(self.port):
            raise DevKubeError(f"port {self.port} is taken by a process callmap did not start")
        binaries = fetch()
        _ensure_pki(self.directory / "pki")
        client_port, peer_port = self._etcd_ports()
        etcd_pid = self._recorded_pid("etcd")
        if etcd_pid is None:
            command = etcd_command(binaries.etcd, self.directory, client_port, peer_port)
            etcd_pid = self._spawn("etcd", command)
        self._wait_etcd(etcd_pid, client_port, timeout)
        command = apiserver_command(binaries.apiserver, self.directory, self.port, client_port)
        pid = self._spawn("apiserver", command)
        pki = self.directory / "pki"
        kubeconfig = render_kubeconfig(
            self.server,
            *((pki / name).read_bytes() for name in ("ca.crt", "admin.crt", "admin.key")),
        )
        self.kubeconfig.write_text(kubeconfig)
        self.kubeconfig.chmod(0o600)
        return self._wait_ready(pid, etcd_pid, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the API server, then etcd, if this instance started them; False if neither ran."""
        stopped = False
        for role in ("apiserver", "etcd"):
            pid = self._recorded_pid(role)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
            self._pid_file(role).unlink(missing_ok=True)
            stopped = True
        return stopped

    def _status(
        self, running: bool, pid: int | None, etcd_pid: int | None, detail: str
    ) -> KubeStatus:
        return KubeStatus(
            running, pid, etcd_pid, self.server, self.kubeconfig, self.directory, detail
        )

    def _spawn(self, role: str, command: list[str]) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{role}.log").open("ab") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the shell that started it does not stop it
            )
        self._pid_file(role).write_text(str(process.pid))
        return process.pid

    def _etcd_ports(self) -> tuple[int, int]:
        """etcd's client and peer ports: chosen once, kept, since etcd's data names them."""
        path = self.directory / "etcd-ports.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            ports = json.loads(path.read_text())
            return int(ports["client"]), int(ports["peer"])
        client, peer = free_port(), free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"client": client, "peer": peer}))
        return client, peer

    def _wait_etcd(self, pid: int, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                self._pid_file("etcd").unlink(missing_ok=True)
                raise DevKubeError(
                    f"etcd exited during start-up; see {self.directory / 'etcd.log'}"
                )
            health = f"http://127.0.0.1:{port}/health"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(health, timeout=2) as answer,
            ):
                if json.loads(answer.read()).get("health") == "true":
                    return
            time.sleep(0.2)
        raise TemporaryError(f"etcd was not healthy within {timeout:.0f}s", delay=5)

    def _wait_ready(self, pid: int, etcd_pid: int | None, timeout: float) -> KubeStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                self._pid_file("apiserver").unlink(missing_ok=True)
                log = self.directory / "apiserver.log"
                raise DevKubeError(f"kube-apiserver exited during start-up; see {log}")
            if self._ready():
                return self._status(True, pid, etcd_pid, "running")
            time.sleep(0.5)
        raise TemporaryError(f"kube-apiserver was not ready within {timeout:.0f}s", delay=5)

    def _ready(self) -> bool:
        """True once ``/readyz`` answers 200 to the admin (anonymous may be refused early)."""
        pki = self.directory / "pki"
        try:
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
            with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=3) as got:
                return bool(got.status == 200)
        except (OSError, ssl.SSLError, urllib.error.URLError):
            return False

    def _pid_file(self, role: str) -> Path:
        return self.directory / f"{role}.pid"

    def _recorded_pid(self, role: str) -> int | None:
        """The recorded pid, if that process still runs this instance's etcd or API server."""
        try:
            pid = int(self._pid_file(role).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        binary = b"etcd" if role == "etcd" else b"kube-apiserver"
        if binary not in cmdline or str(self.directory).encode() not in cmdline:
            self._pid_file(role).unlink(missing_ok=True)  # stale: the pid now runs something else
            return None
        return pid


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall back to probing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


def _accepts_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return bool(probe.connect_ex(("127.0.0.1", port)) == 0)
