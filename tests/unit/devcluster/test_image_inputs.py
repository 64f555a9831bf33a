"""The image builds' pure parts: CoreDNS's directive order, input keys, what ctr and dpkg report."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from devcluster import images
from devcluster.errors import DevClusterError

# CoreDNS 1.14's core/dnsserver/zdirectives.go, shortened: its shape and some of its order.
ZDIRECTIVES = """package dnsserver

var Directives = []string{
\t"root",
\t"reload",
\t"ready",
\t"health",
\t"prometheus",
\t"errors",
\t"log",
\t"loadbalance",
\t"rewrite",
\t"autopath",
\t"cache",
\t"template",
\t"hosts",
\t"kubernetes",
\t"loop",
\t"forward",
\t"whoami",
\t"on",
}
"""

# What `ctr images ls` prints: a header, then one image a line.
LISTING = (
    "REF                       TYPE                                       DIGEST        SIZE"
    "      PLATFORMS   LABELS\n"
    "localhost/callmap/pause:1 application/vnd.oci.image.manifest.v1+json sha256:abc123"
    " 318.4 KiB linux/amd64 -\n"
)


def test_directives_are_read_from_a_go_slice_literal() -> None:
    assert images.directives_in(ZDIRECTIVES)[:3] == ["root", "reload", "ready"]
    with pytest.raises(DevClusterError):
        images.directives_in("package main\n")


def test_our_main_runs_a_subsequence_of_coredns_order() -> None:
    ours = images.directives_in(images.COREDNS_MAIN.read_text())
    assert ours == [name for name in images.directives_in(ZDIRECTIVES) if name in ours]
    images.check_directive_order(ours, images.directives_in(ZDIRECTIVES))


def test_our_main_imports_the_plugin_of_every_directive_and_no_other() -> None:
    source = images.COREDNS_MAIN.read_text()
    plugins = set(re.findall(r'_ "github.com/coredns/coredns/plugin/(\w+)"', source))
    packages = {"prometheus": "metrics"}  # the one directive named unlike its package
    assert plugins == {packages.get(name, name) for name in images.directives_in(source)}


def test_a_directive_out_of_order_or_unknown_is_refused() -> None:
    upstream = images.directives_in(ZDIRECTIVES)
    with pytest.raises(DevClusterError, match="'cache' is out of CoreDNS's own order"):
        images.check_directive_order(["kubernetes", "cache"], upstream)
    with pytest.raises(DevClusterError, match="no directive 'bind'"):
        images.check_directive_order(["bind"], upstream)
    with pytest.raises(DevClusterError, match="out of"):
        images.check_directive_order(["cache", "cache"], upstream)


def test_ctr_listing_gives_the_digest_of_the_reference_only() -> None:
    assert images.listed_digest(LISTING, "localhost/callmap/pause:1") == "sha256:abc123"
    assert images.listed_digest(LISTING, "localhost/callmap/pause:2") is None
    assert images.listed_digest(LISTING.splitlines()[0], "REF") is None  # the header is no image


def test_the_inputs_annotation_is_read_from_a_manifest() -> None:
    manifest = '{"schemaVersion": 2, "annotations": {"io.callmap.inputs": "d313a77c1c36"}}'
    assert images.manifest_annotation(manifest, "io.callmap.inputs") == "d313a77c1c36"
    assert images.manifest_annotation('{"schemaVersion": 2}', "io.callmap.inputs") is None
    assert images.manifest_annotation("no such image", "io.callmap.inputs") is None


def test_packages_not_reported_installed_are_missing() -> None:
    shown = "gcc ii \nlibc6-dev:amd64 ii \nbuildah rc \n"
    wanted = ["gcc", "libc6-dev", "buildah", "mmdebstrap"]
    assert images.missing_packages(shown, wanted) == ["buildah", "mmdebstrap"]


def test_input_keys_are_short_stable_and_keep_parts_apart() -> None:
    key = images.input_key([b"ab", b"c"])
    assert re.fullmatch(r"[0-9a-f]{12}", key)
    assert key == images.input_key([b"ab", b"c"])
    assert key != images.input_key([b"a", b"bc"])


def test_architectures_have_their_go_names() -> None:
    assert images.go_arch("x86_64") == "amd64"
    assert images.go_arch("aarch64") == "arm64"
    assert images.go_arch("riscv64") == "riscv64"


def test_the_base_trusts_local_authorities_only_when_there_are_some() -> None:
    plain = images.mmdebstrap_command(Path("/tmp/base.tar"), local_cas=False)
    assert plain[-2:] == ["bookworm", "/tmp/base.tar"]
    assert "--include=python3,python3-venv,python-is-python3,ca-certificates" in plain
    assert not any("customize" in argument for argument in plain)
    trusting = images.mmdebstrap_command(Path("/tmp/base.tar"), local_cas=True)
    assert any("update-ca-certificates" in argument for argument in trusting)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_callmap_inputs_are_the_files_the_dockerfile_copies(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    for name in ["Dockerfile", "pyproject.toml", "callmap/wire.py", "lab/topologies/a.yaml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("not copied")
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    (tmp_path / "callmap" / "__pycache__").mkdir()
    (tmp_path / "callmap" / "__pycache__" / "wire.pyc").write_bytes(b"ignored")
    _git(tmp_path, "add", "Dockerfile", "callmap/wire.py")
    (tmp_path / "capture").mkdir()
    (tmp_path / "capture" / "new.py").write_text("untracked, not ignored: the build copies it")
    assert sorted(images.callmap_inputs(tmp_path)) == [
        "Dockerfile",
        "callmap/wire.py",
        "capture/new.py",
        "lab/topologies/a.yaml",
        "pyproject.toml",
    ]
