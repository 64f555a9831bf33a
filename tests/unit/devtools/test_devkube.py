"""The development API server's pure parts: the build module, command lines, kubeconfig."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from devtools.kube import (
    DevKube,
    apiserver_command,
    etcd_command,
    kube_ldflags,
    render_build_gomod,
    render_kubeconfig,
    staging_replaces,
)
from devtools.kubepki import ADMIN_USER, render_openssl_config

# The shape of k8s.io/kubernetes' go.mod: staging modules required as v0.0.0 and
# replaced by directories; one staged module nothing requires (never published).
KUBERNETES_GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/JeffAshton/win_pdh v0.0.0-20161109143554-76bb4ee9f0ab
\tk8s.io/api v0.0.0
\tk8s.io/apimachinery v0.0.0
\tk8s.io/utils v0.0.0-20260210185600-b8788abfbbc2
)

require k8s.io/kms v0.0.0 // indirect

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
\tk8s.io/kms => ./staging/src/k8s.io/kms
\tk8s.io/sample-cli-plugin => ./staging/src/k8s.io/sample-cli-plugin
)
"""


def test_every_required_staging_module_is_pinned_to_its_v0_release() -> None:
    assert staging_replaces(KUBERNETES_GOMOD, "v1.36.3") == [
        "k8s.io/api => k8s.io/api v0.36.3",
        "k8s.io/apimachinery => k8s.io/apimachinery v0.36.3",
        "k8s.io/kms => k8s.io/kms v0.36.3",
    ]


def test_the_build_module_requires_the_release_and_carries_the_replaces() -> None:
    gomod = render_build_gomod("k8s.io/kubernetes", "v1.36.3", ["k8s.io/api => k8s.io/api v0.36.3"])
    assert "require k8s.io/kubernetes v1.36.3\n" in gomod
    assert "replace (\n\tk8s.io/api => k8s.io/api v0.36.3\n)" in gomod
    assert "replace" not in render_build_gomod("go.etcd.io/etcd/server/v3", "v3.6.8", [])


def test_the_binary_says_which_release_it_is() -> None:
    flags = kube_ldflags("v1.36.3")
    assert "-X k8s.io/component-base/version.gitVersion=v1.36.3" in flags
    assert "-X k8s.io/component-base/version.gitMinor=36" in flags


def test_leaf_certificates_are_not_authorities() -> None:
    leaf = render_openssl_config({"CN": "kube-apiserver"}, "extendedKeyUsage = serverAuth")
    assert "CA:FALSE" in leaf and "keyUsage = critical, digitalSignature" in leaf
    authority = render_openssl_config({"CN": "ca"}, "basicConstraints = critical, CA:TRUE")
    assert "CA:FALSE" not in authority
    admin = render_openssl_config({"O": "system:masters", "CN": ADMIN_USER}, "")
    assert "O = system:masters\nCN = callmap-admin" in admin


def test_etcd_listens_on_loopback_only_and_keeps_its_data_in_the_instance(tmp_path: Path) -> None:
    command = etcd_command(Path("/bin/etcd"), tmp_path, 2379, 2380)
    assert f"--data-dir={tmp_path / 'etcd'}" in command
    urls = [arg.split("=", 1)[1] for arg in command if "-urls=" in arg and arg.split("=", 1)[1]]
    assert urls and all(url.startswith("http://127.0.0.1:") for url in urls)


def test_the_api_server_is_loopback_only_rbac_and_signs_service_account_tokens(
    tmp_path: Path,
) -> None:
    command = apiserver_command(Path("/bin/kube-apiserver"), tmp_path, 6443, 2379)
    pki = tmp_path / "pki"
    for flag in (
        "--bind-address=127.0.0.1",
        "--secure-port=6443",
        "--etcd-servers=http://127.0.0.1:2379",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.96.0.0/16",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
    ):
        assert flag in command
    assert all(str(tmp_path) in arg for arg in command if arg.endswith((".crt", ".key", ".pub")))


def test_extra_flags_come_last_so_they_win(tmp_path: Path) -> None:
    extra = ("--watch-cache=false", "--etcd-compaction-interval=1s")
    command = apiserver_command(Path("/bin/kube-apiserver"), tmp_path, 6443, 2379, extra_args=extra)
    assert tuple(command[-2:]) == extra


def test_the_kubeconfig_embeds_every_credential() -> None:
    text = render_kubeconfig("https://127.0.0.1:6443", b"CA", b"CERT", b"KEY")
    config = yaml.safe_load(text)
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    assert context["context"]["user"] == config["users"][0]["name"] == ADMIN_USER


def test_a_pid_file_naming_someone_elses_process_is_ignored(tmp_path: Path) -> None:
    server = DevKube(tmp_path, port=1)
    for role in ("apiserver", "etcd"):
        (tmp_path / f"{role}.pid").write_text("1")  # init: alive, but not our server
    status = server.status()
    assert not status.running and status.pid is None and status.etcd_pid is None
    assert status.detail == "not started"
    assert server.stop() is False
    assert not list(tmp_path.glob("*.pid"))
