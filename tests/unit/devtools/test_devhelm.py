"""Building Helm: the build module, the stamped versions, and a cached build that is reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import helm as devhelm
from devtools.kube import render_build_gomod

HELM_GOMOD = """module helm.sh/helm/v3

go 1.26.0

require (
\tgithub.com/BurntSushi/toml v1.6.0
\tk8s.io/client-go v0.37.0
\tk8s.io/client-go-extra v0.1.0
)

require k8s.io/klog/v2 v2.130.1 // indirect
"""


def test_the_required_version_of_a_module_is_read_from_a_block_or_a_line() -> None:
    assert devhelm.required_version(HELM_GOMOD, "k8s.io/client-go") == "v0.37.0"
    assert devhelm.required_version(HELM_GOMOD, "k8s.io/klog/v2") == "v2.130.1"
    with pytest.raises(devhelm.DevHelmError, match=r"does not require k8s\.io/api"):
        devhelm.required_version(HELM_GOMOD, "k8s.io/api")


def test_helm_says_which_release_it_is_and_which_kubernetes_it_renders_for() -> None:
    flags = devhelm.helm_ldflags("v3.22.0", "v0.37.0")
    assert "-X helm.sh/helm/v3/internal/version.version=v3.22.0" in flags
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" in flags
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" in flags
    assert "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37" in flags


def test_the_build_module_requires_the_pinned_release() -> None:
    gomod = render_build_gomod(devhelm.HELM_MODULE, devhelm.HELM_VERSION, [])
    assert f"require helm.sh/helm/v3 {devhelm.HELM_VERSION}\n" in gomod
    assert devhelm.HELM_PACKAGE == "helm.sh/helm/v3/cmd/helm"


def test_a_built_binary_is_reused_without_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMAP_CACHE", str(tmp_path))

    def no_go(*args: object, **kwargs: object) -> str:
        raise AssertionError("go must not run for a cached build")

    monkeypatch.setattr(devhelm, "_go", no_go)
    binary = devhelm.helm_binary()
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    assert not devhelm.helm_built()  # no stamp: a build that did not finish
    (devhelm.helm_home() / "built-helm").write_text("{}")
    assert devhelm.helm_built() and devhelm.fetch() == binary


def test_without_go_the_build_fails_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMAP_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(devhelm.DevHelmError, match=r"Go .* is needed to build helm"):
        devhelm.fetch()
    assert not devhelm.helm_built()


def test_helm_keeps_its_own_files_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMAP_CACHE", str(tmp_path))
    env = devhelm.helm_environment()
    assert all(
        env[name].startswith(str(tmp_path))
        for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")
    )
