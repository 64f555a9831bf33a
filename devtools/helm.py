"""A Helm 3 binary for rendering and checking callmap's chart, built once from the Go module proxy.

``helm.sh/helm/v3/cmd/helm`` is built with the Go installed on the machine
(``GOTOOLCHAIN=local``, ``CGO_ENABLED=0``) in a throwaway module that requires
the release, into ``<cache>/helm/<version>/bin/helm``, under a file lock, with a
``built`` stamp written only after success; later calls return at once. The
build stamps what Helm's own Makefile stamps (its version, and the Kubernetes
version ``helm template`` assumes, from the ``k8s.io/client-go`` it links).

:func:`template` renders a chart with it; ``callmap dev helm manifests``
rewrites ``deploy/manifests/`` from the chart with its default values (a test
checks the two agree). ``python -m devtools.helm fetch`` builds without the
``callmap`` command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from callmap.errors import CallmapError
from callmap.paths import cache_dir
from devtools.kube import render_build_gomod
from devtools.process import go_build_once, go_built, run_go

HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3"
HELM_PACKAGE = f"{HELM_MODULE}/cmd/helm"

# Where the chart and its rendering live, relative to the repository's root.
CHART = Path("deploy/helm/callmap")
MANIFESTS = Path("deploy/manifests/callmap.yaml")
# The release name and namespace the shipped manifests are rendered for.
RELEASE = "callmap"
NAMESPACE = "callmap"


class DevHelmError(CallmapError):
    """Helm could not be built, or refused to render the chart."""


def helm_home(version: str = HELM_VERSION) -> Path:
    return cache_dir() / "helm" / version


def helm_binary(version: str = HELM_VERSION) -> Path:
    return helm_home(version) / "bin" / "helm"


def helm_built(version: str = HELM_VERSION) -> bool:
    """True if the binary is in the cache already (nothing to build)."""
    return go_built(helm_home(version), "helm")


def fetch(version: str = HELM_VERSION) -> Path:
    """The helm binary, built with Go the first time (a few minutes, once per machine)."""

    def prepare(build: Path) -> str:
        (build / "go.mod").write_text(render_build_gomod(HELM_MODULE, version, []))
        listing = _go(["mod", "download", "-json", f"{HELM_MODULE}@{version}"], build)
        upstream = Path(json.loads(listing)["GoMod"]).read_text()
        return helm_ldflags(version, required_version(upstream, "k8s.io/client-go"))

    home, packages = helm_home(version), {"helm": HELM_PACKAGE}
    return go_build_once(home, packages, prepare, error=DevHelmError, needed_for="helm")["helm"]


def required_version(gomod: str, module: str) -> str:
    """The version of ``module`` that a go.mod requires (one line or inside a block)."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod, re.MULTILINE)
    if match is None:
        raise DevHelmError(f"{HELM_MODULE}'s go.mod does not require {module}")
    return match.group(1)


def helm_ldflags(version: str, client_go: str) -> str:
    """What Helm's Makefile stamps in: its version, and Kubernetes 1.N for client-go v0.N.

    ``helm template`` checks a chart's ``kubeVersion`` and fills
    ``.Capabilities.KubeVersion`` from the latter; unstamped it would say 1.20.
    """
    minor = client_go.lstrip("v").split(".")[1]
    flags = ["-s", "-w", f"-X {HELM_MODULE}/internal/version.version={version}"]
    flags.append(f"-X {HELM_MODULE}/internal/version.gitTreeState=clean")
    for package in ("pkg/chartutil", "pkg/lint/rules"):
        flags += [f"-X {HELM_MODULE}/{package}.k8sVersionMajor=1"]
        flags += [f"-X {HELM_MODULE}/{package}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def template(
    chart: Path,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    values: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    api_versions: Sequence[str] = (),
) -> str:
    """``helm template``: the chart rendered as one YAML stream, or DevHelmError saying why.

    ``api_versions`` are extra API versions the chart may assume exist (for
    ``.Capabilities.APIVersions.Has``), as a cluster would advertise them.
    """
    command = [str(fetch()), "template", release, str(chart), "--namespace", namespace]
    for path in values:
        command += ["--values", str(path)]
    for assignment in set_values:
        command += ["--set", assignment]
    for api in api_versions:
        command += ["--api-versions", api]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, env=helm_environment()
    )
    if result.returncode != 0:
        raise DevHelmError(f"helm template failed: {result.stderr.strip()}")
    return result.stdout


def render(
    chart: Path,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    values: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    api_versions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """:func:`template`'s output as objects (empty documents left out)."""
    rendered = template(
        chart,
        release=release,
        namespace=namespace,
        values=values,
        set_values=set_values,
        api_versions=api_versions,
    )
    return [document for document in yaml.safe_load_all(rendered) if document]


def lint(chart: Path, values: Sequence[Path] = ()) -> str:
    """``helm lint --strict``: its report, or DevHelmError with it."""
    command = [str(fetch()), "lint", "--strict", str(chart)]
    for path in values:
        command += ["--values", str(path)]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, env=helm_environment()
    )
    if result.returncode != 0:
        raise DevHelmError(f"helm lint failed:\n{result.stdout}{result.stderr}".strip())
    return result.stdout


def render_manifests(root: Path) -> str:
    """The chart rendered with its defaults, as ``deploy/manifests/`` ships it."""
    rendered = template(root / CHART)
    header = (
        "# callmap rendered from deploy/helm/callmap with its default values, for\n"
        f"# clusters without Helm: kubectl create namespace {NAMESPACE} &&\n"
        f"#   kubectl apply -n {NAMESPACE} -f {MANIFESTS}\n"
        "# Generated by `callmap dev helm manifests`; do not edit (a test checks it).\n"
    )
    return header + rendered


def helm_environment() -> dict[str, str]:
    """Helm's own cache, config and data in the cache: never the user's ~/.config/helm."""
    home = cache_dir() / "helm" / "home"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": os.devnull,  # `template` needs no cluster; never reach the user's
    }


def _go(args: list[str], cwd: Path) -> str:
    return run_go(args, cwd, error=DevHelmError, needed_for="helm")


@click.group()
def helm() -> None:
    """A Helm 3 binary for callmap's chart, built from the Go module proxy (once)."""


@helm.command("fetch")
def fetch_command() -> None:
    """Build helm into the cache (once; a few minutes) and print its path."""
    if not helm_built():
        click.echo(f"building helm {HELM_VERSION} with Go (once per machine) ...", err=True)
    click.echo(str(fetch()))


@helm.command("manifests")
@click.option("--root", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--check", is_flag=True, help="Fail if deploy/manifests/ differs from the chart.")
def manifests_command(root: Path, check: bool) -> None:
    """Render the chart with its defaults into deploy/manifests/."""
    rendered, path = render_manifests(root), root / MANIFESTS
    if check:
        if not path.exists() or path.read_text() != rendered:
            click.echo(f"{path} is stale; run `callmap dev helm manifests`", err=True)
            sys.exit(1)
        click.echo(f"{path} is current")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    helm(prog_name="python -m devtools.helm")
