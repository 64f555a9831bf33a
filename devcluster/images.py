"""Every container image a development cluster runs, built on this machine, as OCI archives.

Nothing can be pulled from a public registry here, so each image is built
from what the machine has and written as an OCI image archive that
``ctr images import`` reads:

- ``localhost/callmap/pause:1``, the pod sandbox, from ``native/pause.c``
  compiled with ``gcc -static -Os``: ``/pause`` alone in one layer;
- ``localhost/callmap/coredns:<version>``, the cluster DNS, from the Go module
  proxy: ``native/coredns/main.go`` imports only the plugins a cluster DNS uses
  (their order is checked against the release's own before building); a
  static ``/coredns`` alone in one layer;
- ``localhost/callmap/callmap:<tag>``, the project's own image, from the
  repository's ``Dockerfile`` with buildah, on a Debian bookworm base that
  mmdebstrap makes here (``localhost/callmap/python-base:bookworm``, given as
  the ``PYTHON_IMAGE`` build argument). The tag is a hash of what the build
  copies (``git ls-files`` of the packages, ``pyproject.toml``, the
  ``Dockerfile``) and of the base, so a code change rebuilds the image and an
  unchanged tree reuses its archive. The base trusts the certificate
  authorities this machine added locally (``/usr/local/share/ca-certificates``),
  so that pip inside the build trusts what the host trusts.

Archives and build state live under ``<cache>/images`` (buildah's storage
too), in directories keyed by the build's inputs: a build runs once per set
of inputs, under a file lock, and writes its archive whole or not at all.
Debian packages a build needs (gcc, libc6-dev, buildah, mmdebstrap,
containerd) are installed when missing, as ``make system-deps`` does.
:func:`import_image` loads an archive into a running containerd, once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from callmap.paths import cache_dir
from devcluster import oci
from devcluster.errors import DevClusterError
from devtools.kube import render_build_gomod
from devtools.process import go_build_once, locked, run_go

COREDNS_VERSION = "v1.14.7"  # kubeadm 1.36 deploys 1.14; this is its newest patch release
COREDNS_MODULE = "github.com/coredns/coredns"
PAUSE_REFERENCE = "localhost/callmap/pause:1"
PYTHON_BASE_REFERENCE = "localhost/callmap/python-base:bookworm"
CALLMAP_REPOSITORY = "localhost/callmap/callmap"

NATIVE = Path(__file__).parent / "native"
PAUSE_SOURCE = NATIVE / "pause.c"
COREDNS_MAIN = NATIVE / "coredns" / "main.go"
PAUSE_FLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra")
# The base the Dockerfile's PYTHON_IMAGE stands for: Debian's Python 3.11, as python:3.11-slim.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
# What the callmap image is built from, relative to the repository (Dockerfile's COPY lines).
CALLMAP_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml")
CALLMAP_PACKAGES = ("callmap", "capture", "watch", "streams", "sinks", "lab")
KEEP_CALLMAP_ARCHIVES = 3  # of earlier trees, for switching branches back and forth
_INPUTS_ANNOTATION = "io.callmap.inputs"


@dataclass(frozen=True, slots=True)
class ImageArchive:
    """An OCI image archive on disk and the reference it is imported as."""

    reference: str
    path: Path


@dataclass(frozen=True, slots=True)
class ClusterImages:
    """The images a development cluster needs: the sandbox, its DNS, and callmap."""

    pause: ImageArchive
    coredns: ImageArchive
    callmap: ImageArchive

    def __iter__(self) -> Iterator[ImageArchive]:
        return iter((self.pause, self.coredns, self.callmap))

    @property
    def references(self) -> dict[str, str]:
        """Each image's reference by its role: ``pause``, ``coredns``, ``callmap``."""
        return {
            "pause": self.pause.reference,
            "coredns": self.coredns.reference,
            "callmap": self.callmap.reference,
        }


def images_home() -> Path:
    return cache_dir() / "images"


def build_all(repo: Path, coredns_version: str = COREDNS_VERSION) -> ClusterImages:
    """All three images, each built the first time its inputs are seen, from cache after."""
    return ClusterImages(pause_image(), coredns_image(coredns_version), callmap_image(repo))


# -- pause --------------------------------------------------------------------------------------


def pause_image() -> ImageArchive:
    """The pod sandbox image: ``native/pause.c``, compiled static, as ``/pause``."""
    config = oci.ImageConfig(entrypoint=("/pause",), user="65535:65535", architecture=go_arch())
    source = PAUSE_SOURCE.read_bytes()
    home = (
        images_home()
        / "pause"
        / input_key([source, " ".join(PAUSE_FLAGS).encode(), _format(config)])
    )
    archive = ImageArchive(PAUSE_REFERENCE, home / "pause.tar")
    if archive.path.exists():
        return archive
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if not archive.path.exists():
            ensure_debian_packages(["gcc", "libc6-dev"])
            binary = home / "pause"
            _run(["gcc", *PAUSE_FLAGS, "-o", str(binary), str(PAUSE_SOURCE)], what="gcc (pause)")
            files = [oci.LayerFile("/pause", binary, 0o755)]
            oci.write_archive(archive.path, files, config, archive.reference)
    return archive


# -- CoreDNS ------------------------------------------------------------------------------------


def coredns_image(version: str = COREDNS_VERSION) -> ImageArchive:
    """CoreDNS ``version`` with the cluster plugins only, built with Go, as ``/coredns``."""
    reference = f"localhost/callmap/coredns:{version}"
    labels = {
        "org.opencontainers.image.title": "coredns",
        "org.opencontainers.image.version": version,
    }
    config = oci.ImageConfig(entrypoint=("/coredns",), labels=labels, architecture=go_arch())
    main = COREDNS_MAIN.read_bytes()
    home = images_home() / "coredns" / version / input_key([main, _format(config)])
    archive = ImageArchive(reference, home / "coredns.tar")
    if archive.path.exists():
        return archive
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if not archive.path.exists():
            binary = _build_coredns(home, version, main)
            files = [oci.LayerFile("/coredns", binary, 0o755)]
            oci.write_archive(archive.path, files, config, reference)
    return archive


def _build_coredns(home: Path, version: str, main: bytes) -> Path:
    """``home/go/bin/coredns``, built once in a throwaway module holding ``main``."""

    def prepare(build: Path) -> str:
        (build / "go.mod").write_text(render_build_gomod(COREDNS_MODULE, version, []))
        (build / "main.go").write_bytes(main)
        listing = _go(["mod", "download", "-json", f"{COREDNS_MODULE}@{version}"], build)
        upstream = Path(json.loads(listing)["Dir"]) / "core" / "dnsserver" / "zdirectives.go"
        check_directive_order(directives_in(main.decode()), directives_in(upstream.read_text()))
        return "-s -w"

    packages = {"coredns": "."}
    # Its own directory, with its own lock: the image's lock is held around this build.
    go_home = home / "go"
    built = go_build_once(go_home, packages, prepare, error=DevClusterError, needed_for="CoreDNS")
    return built["coredns"]


def directives_in(go_source: str) -> list[str]:
    """The names in the ``Directives = []string{...}`` literal of a Go file."""
    block = re.search(r"Directives\s*=\s*\[\]string\s*\{(.*?)\}", go_source, re.DOTALL)
    if block is None:
        raise DevClusterError("no `Directives = []string{...}` in the Go source")
    return re.findall(r'"([^"]+)"', block.group(1))


def check_directive_order(ours: Sequence[str], upstream: Sequence[str]) -> None:
    """Refuse ``ours`` unless it is ``upstream`` with some directives left out, nothing moved.

    CoreDNS runs a server block's plugins in the order of its directive list,
    and a plugin may rely on the ones before it (``cache`` before
    ``kubernetes``, ``loop`` before ``forward``): a new release may reorder them.
    """
    position = {name: index for index, name in enumerate(upstream)}
    unknown = [name for name in ours if name not in position]
    if unknown:
        raise DevClusterError(f"CoreDNS has no directive {unknown[0]!r} in this release")
    ranks = [position[name] for name in ours]
    for before, after, name in zip(ranks, ranks[1:], ours[1:], strict=False):
        if after <= before:
            raise DevClusterError(
                f"CoreDNS directive {name!r} is out of CoreDNS's own order; it is: "
                + ", ".join(name for name in upstream if name in set(ours))
            )


def _go(args: list[str], cwd: Path) -> str:
    return run_go(args, cwd, error=DevClusterError, needed_for="CoreDNS")


# -- callmap ------------------------------------------------------------------------------------


def callmap_image(repo: Path) -> ImageArchive:
    """The project's image from ``repo``'s Dockerfile, on a base built here, with buildah."""
    base_key = _base_key()
    tag = input_key([base_key.encode(), *_hashable(callmap_inputs(repo))])
    reference = f"{CALLMAP_REPOSITORY}:{tag}"
    home = images_home() / "callmap"
    archive = ImageArchive(reference, home / "archives" / f"callmap-{tag}.tar")
    if archive.path.exists():
        return archive
    archive.path.parent.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if archive.path.exists():
            return archive
        ensure_debian_packages(["buildah", "mmdebstrap"])
        base_seconds = _ensure_base(home, base_key)
        started = time.monotonic()
        log = home / "build.log"
        buildah = _buildah(home)
        _run(
            [
                *buildah,
                "bud",
                "--isolation=chroot",  # needs only root: no runtime, no user namespaces
                "--pull=never",  # the base is local; nothing is to be pulled
                f"--build-arg=PYTHON_IMAGE={PYTHON_BASE_REFERENCE}",
                f"--tag={reference}",
                f"--file={repo / 'Dockerfile'}",
                str(repo),
            ],
            what="buildah bud (callmap image)",
            log=log,
        )
        partial = archive.path.with_name(archive.path.name + ".partial")
        partial.unlink(missing_ok=True)
        destination = f"oci-archive:{partial}:{reference}"
        _run([*buildah, "push", reference, destination], what="buildah push", log=log, append=True)
        os.replace(partial, archive.path)
        # The archive is the cache: the image itself need not stay in buildah's storage.
        _run([*buildah, "rmi", reference], what="buildah rmi", log=log, append=True)
        stamp = {"reference": reference, "seconds": time.monotonic() - started}
        stamp["base_seconds"] = base_seconds
        archive.path.with_suffix(".json").write_text(json.dumps(stamp))
        _prune(archive.path.parent, KEEP_CALLMAP_ARCHIVES)
    return archive


def callmap_inputs(repo: Path) -> dict[str, bytes]:
    """What the Dockerfile copies, by path: git's files that are neither ignored nor deleted."""
    paths = [*CALLMAP_INPUTS, *CALLMAP_PACKAGES]
    command = ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others"]
    listing = _run([*command, "--exclude-standard", "--", *paths], what="git ls-files")
    files = {name: repo / name for name in listing.split("\0") if name}
    return {name: path.read_bytes() for name, path in sorted(files.items()) if path.is_file()}


def _ensure_base(home: Path, key: str) -> float:
    """The Python base image in buildah's storage, made with mmdebstrap when its key changed."""
    buildah = _buildah(home)
    inspect = [*buildah, "inspect", "--type=image", "--format={{.Manifest}}", PYTHON_BASE_REFERENCE]
    found = subprocess.run(inspect, capture_output=True, text=True, check=False)
    if found.returncode == 0 and manifest_annotation(found.stdout, _INPUTS_ANNOTATION) == key:
        return 0.0
    started = time.monotonic()
    rootfs, log = home / "base.tar", home / "base.log"
    try:
        rootfs.unlink(missing_ok=True)
        _run(mmdebstrap_command(rootfs, has_local_cas()), what="mmdebstrap (Python base)", log=log)
        _commit_base(buildah, rootfs, key, log)
    finally:
        rootfs.unlink(missing_ok=True)
    return time.monotonic() - started


def _commit_base(buildah: list[str], rootfs: Path, key: str, log: Path) -> None:
    """``rootfs`` (a tar) as the base image, annotated with its inputs' key."""
    container = _run([*buildah, "from", "scratch"], what="buildah from").strip()
    try:
        add = [*buildah, "add", container, str(rootfs), "/"]  # a tar is unpacked, owners kept
        _run(add, what="buildah add", log=log, append=True)
        settings = [f"--env={entry}" for entry in BASE_ENV]
        settings += ["--cmd=python3", f"--annotation={_INPUTS_ANNOTATION}={key}"]
        _run([*buildah, "config", *settings, container], what="buildah config")
        commit = [*buildah, "commit", "--rm", container, PYTHON_BASE_REFERENCE]
        _run(commit, what="buildah commit", log=log, append=True)
    except DevClusterError:
        subprocess.run([*buildah, "rm", container], capture_output=True, check=False)
        raise
    # The base it replaces, now untagged; nothing else in this storage is left untagged.
    _run([*buildah, "rmi", "--prune"], what="buildah rmi --prune", log=log, append=True)


def manifest_annotation(manifest: str, name: str) -> str | None:
    """The annotation ``name`` of an image manifest (JSON), None if it has none or is no JSON."""
    try:
        annotations = json.loads(manifest).get("annotations") or {}
    except (ValueError, AttributeError):
        return None
    value = annotations.get(name)
    return value if isinstance(value, str) else None


def mmdebstrap_command(rootfs: Path, local_cas: bool) -> list[str]:
    """mmdebstrap making the base's root file system as a tar, from Debian's default mirrors."""
    command = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
    ]
    if local_cas:
        command += [
            f"--customize-hook=copy-in {LOCAL_CAS} {LOCAL_CAS.parent}",
            '--customize-hook=chroot "$1" update-ca-certificates',
        ]
    return [*command, BASE_SUITE, str(rootfs)]


def has_local_cas() -> bool:
    return LOCAL_CAS.is_dir() and any(LOCAL_CAS.rglob("*.crt"))


def _base_key() -> str:
    """What the base is made of: its command, and the local certificate authorities it trusts."""
    parts = [json.dumps([mmdebstrap_command(Path("-"), True), BASE_ENV]).encode()]
    if has_local_cas():
        parts += _hashable({str(path): path.read_bytes() for path in LOCAL_CAS.rglob("*.crt")})
    return input_key(parts)


def _buildah(home: Path) -> list[str]:
    """buildah with its storage in the cache, not in /var/lib/containers."""
    storage = home / "storage"
    return [
        "buildah",
        f"--root={storage / 'root'}",
        f"--runroot={storage / 'run'}",
        "--storage-driver=overlay",
    ]


def _prune(directory: Path, keep: int) -> None:
    """Remove all but the ``keep`` newest archives (and their stamps) in ``directory``."""
    archives = sorted(directory.glob("*.tar"), key=lambda path: path.stat().st_mtime, reverse=True)
    for stale in archives[keep:]:
        stale.unlink(missing_ok=True)
        stale.with_suffix(".json").unlink(missing_ok=True)


# -- containerd ---------------------------------------------------------------------------------


def import_image(archive: ImageArchive, address: Path, namespace: str = "k8s.io") -> None:
    """Import ``archive`` into the containerd at ``address`` unless it is there already; checked."""
    if shutil.which("ctr") is None:
        ensure_debian_packages(["containerd"])
    reference, digest = oci.archive_manifest(archive.path)
    if reference != archive.reference:
        raise DevClusterError(f"{archive.path} names {reference!r}, not {archive.reference!r}")
    ctr = ["ctr", f"--address={address}", f"--namespace={namespace}"]
    listing = [*ctr, "images", "ls", f"name=={reference}"]
    if listed_digest(_run(listing, what="ctr images ls"), reference) == digest:
        return
    _run([*ctr, "images", "import", str(archive.path)], what=f"ctr images import {reference}")
    listed = listed_digest(_run(listing, what="ctr images ls"), reference)
    if listed != digest:
        raise DevClusterError(f"containerd lists {reference} as {listed}, not {digest}")


def listed_digest(listing: str, reference: str) -> str | None:
    """The digest ``ctr images ls`` shows for ``reference``, None if it does not list it."""
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == reference:
            return fields[2]
    return None


# -- shared -------------------------------------------------------------------------------------


def ensure_debian_packages(packages: Sequence[str]) -> None:
    """Install those of ``packages`` that are not installed, with apt-get (needs root)."""
    query = ["dpkg-query", "--show", "--showformat=${Package} ${db:Status-Abbrev}\\n", *packages]
    shown = subprocess.run(query, capture_output=True, text=True, check=False).stdout
    missing = missing_packages(shown, packages)
    if not missing:
        return
    if os.geteuid() != 0:
        raise DevClusterError(f"these Debian packages are needed; install them as root: {missing}")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-qq", "-o", "DPkg::Lock::Timeout=600"]  # another install may be under way
    _run([*apt, "update"], what="apt-get update", env=environment)
    install = [*apt, "install", "-y", "--no-install-recommends", *missing]
    _run(install, what=f"apt-get install {' '.join(missing)}", env=environment)


def missing_packages(dpkg_query_output: str, packages: Iterable[str]) -> list[str]:
    """Those of ``packages`` that ``dpkg-query --show`` (``${Package} ${db:Status-Abbrev}``)
    does not report installed (``ii``)."""
    installed = set()
    for line in dpkg_query_output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] == "ii":
            installed.add(fields[0].split(":")[0])  # "libc6-dev:amd64" on multi-arch machines
    return sorted(set(packages) - installed)


def input_key(parts: Iterable[bytes]) -> str:
    """A short name for a build's inputs: the first 12 hex digits of their SHA-256."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))  # so that parts cannot run into each other
        digest.update(part)
    return digest.hexdigest()[:12]


def go_arch(machine: str | None = None) -> str:
    """The Go (and OCI) name of this machine's architecture."""
    machine = machine or platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _hashable(files: dict[str, bytes]) -> list[bytes]:
    return [part for name in sorted(files) for part in (name.encode(), files[name])]


def _format(config: oci.ImageConfig) -> bytes:
    """An image config and the OCI writer's own source: what else decides an archive's bytes."""
    return repr(config).encode() + Path(oci.__file__).read_bytes()


def _run(
    command: list[str],
    *,
    what: str,
    log: Path | None = None,
    append: bool = False,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``command``; its output (or, with ``log``, written there); a failure raises."""
    try:
        if log is None:
            result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            output, errors = result.stdout, result.stderr
        else:
            with log.open("a" if append else "w") as sink:
                result = subprocess.run(
                    command, stdout=sink, stderr=subprocess.STDOUT, text=True, env=env, check=False
                )
            output, errors = "", log.read_text()
    except FileNotFoundError:
        raise DevClusterError(f"{what}: the {command[0]} command is not installed") from None
    if result.returncode != 0:
        tail = "\n".join(errors.strip().splitlines()[-25:])
        where = f" (log: {log})" if log else ""
        raise DevClusterError(f"{what} failed with status {result.returncode}{where}:\n{tail}")
    return output
