"""The development cluster's images in a real containerd: imported, listed, and their programs run.

The images come from :func:`devcluster.images.build_all` (built the first time,
from the cache after). A containerd of this module's own runs with its root,
state and socket in pytest's temporary directory and the CRI plugin off; it is
stopped by the pid it was started with. Needs root (containerd, runc, apt).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import images, oci
from devtools.process import PidFile

# A cold build of CoreDNS and of callmap's base and image; minutes, once per machine.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[3]
NAMESPACE = "k8s.io"


def containerd_config(directory: Path) -> str:
    return f"""version = 2
root = "{directory / "root"}"
state = "{directory / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{directory / "containerd.sock"}"
"""


@pytest.fixture(scope="module")
def built() -> images.ClusterImages:
    if os.geteuid() != 0:
        pytest.skip("building images and running containerd need root")
    return images.build_all(REPO)


@pytest.fixture(scope="module")
def containerd(
    tmp_path_factory: pytest.TempPathFactory, built: images.ClusterImages
) -> Iterator[Path]:
    """The socket of a throwaway containerd, stopped (by its pid) after the module's tests."""
    images.ensure_debian_packages(["containerd", "runc"])
    directory = tmp_path_factory.mktemp("containerd")
    config = directory / "config.toml"
    config.write_text(containerd_config(directory))
    socket = directory / "containerd.sock"
    server = PidFile(directory / "containerd.pid", (b"containerd\0", str(config).encode()))
    server.spawn(["containerd", "--config", str(config)], directory / "containerd.log")
    try:
        deadline = time.monotonic() + 30
        while ctr(socket, "version", check=False).returncode != 0:
            assert time.monotonic() < deadline, (directory / "containerd.log").read_text()[-2000:]
            time.sleep(0.1)
        yield socket
    finally:
        server.stop(timeout=30)


@pytest.fixture(scope="module")
def imported(built: images.ClusterImages, containerd: Path) -> images.ClusterImages:
    for archive in built:
        images.import_image(archive, containerd, NAMESPACE)
    return built


def ctr(socket: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ctr", f"--address={socket}", f"--namespace={NAMESPACE}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return result


def test_every_image_is_listed_once_imported_and_a_second_import_changes_nothing(
    imported: images.ClusterImages, containerd: Path
) -> None:
    assert imported.references["pause"] == "localhost/callmap/pause:1"
    assert imported.references["coredns"] == f"localhost/callmap/coredns:{images.COREDNS_VERSION}"
    assert imported.references["callmap"].startswith("localhost/callmap/callmap:")
    before = ctr(containerd, "images", "ls").stdout
    for archive in imported:
        assert archive.reference in ctr(containerd, "images", "ls", "--quiet").stdout.split()
        # what import_image looks for to know that the image is there already
        listing = ctr(containerd, "images", "ls", f"name=={archive.reference}").stdout
        digest = oci.archive_manifest(archive.path)[1]
        assert images.listed_digest(listing, archive.reference) == digest
        images.import_image(archive, containerd, NAMESPACE)
    assert ctr(containerd, "images", "ls").stdout == before


def test_the_pause_image_runs_until_sigterm_and_then_exits_0(
    imported: images.ClusterImages, containerd: Path
) -> None:
    reference = imported.pause.reference
    version = ctr(containerd, "run", "--rm", reference, "pause-version", "/pause", "-v")
    assert version.stdout.strip() == "callmap pause 1"
    command = ["ctr", f"--address={containerd}", f"--namespace={NAMESPACE}", "run", "--rm"]
    running = subprocess.Popen([*command, reference, "pause"], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while "RUNNING" not in ctr(containerd, "tasks", "ls").stdout:
            assert running.poll() is None and time.monotonic() < deadline, "pause did not start"
            time.sleep(0.1)
        time.sleep(0.2)  # a signal that comes before its handlers are set would kill it
        ctr(containerd, "tasks", "kill", "--signal=SIGTERM", "pause")
        assert running.wait(timeout=30) == 0
    finally:
        if running.poll() is None:
            ctr(containerd, "tasks", "kill", "--signal=SIGKILL", "pause", check=False)
            running.wait(timeout=30)


def test_the_coredns_image_runs_coredns(imported: images.ClusterImages, containerd: Path) -> None:
    arguments = [imported.coredns.reference, "coredns-version", "/coredns", "-version"]
    version = ctr(containerd, "run", "--rm", *arguments)
    assert f"CoreDNS-{images.COREDNS_VERSION.removeprefix('v')}" in version.stdout
    listing = [arguments[0], "coredns-plugins", "/coredns", "-plugins"]
    plugins = ctr(containerd, "run", "--rm", *listing)
    listed = set(plugins.stdout.split())
    assert {"kubernetes", "forward", "cache", "prometheus"} <= listed
    assert not {"route53", "azure", "clouddns"} & listed  # the cloud SDKs are left out


def test_the_callmap_image_runs_callmap_and_imports_every_package(
    imported: images.ClusterImages, containerd: Path
) -> None:
    reference = imported.callmap.reference
    usage = ctr(containerd, "run", "--rm", reference, "callmap-help")  # tini -- callmap --help
    assert "Usage: callmap" in usage.stdout
    program = "import capture, watch, streams, sinks, lab; print('imported')"
    imports = ctr(containerd, "run", "--rm", reference, "callmap-imports", "python", "-c", program)
    assert imports.stdout.strip() == "imported"
