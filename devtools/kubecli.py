"""``callmap dev kube ...``: a real Kubernetes API server (kube-apiserver and etcd) on loopback.

The same verbs and options as ``callmap dev kafka``; every command says where
the admin kubeconfig is, so ``export KUBECONFIG=...`` is one copy away.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

from devtools.kube import DEFAULT_PORT, ETCD_VERSION, KUBE_VERSION, DevKube, binaries_built, fetch

console = Console()


@click.group()
def kube() -> None:
    """A real Kubernetes API server (kube-apiserver and etcd, no nodes) on loopback."""


_name = click.option("--name", default="dev", show_default=True, help="Server instance name.")
_port = click.option("--port", default=DEFAULT_PORT, show_default=True, help="Secure (HTTPS) port.")


def _announce_build() -> None:
    if not binaries_built():
        console.print(
            f"building kube-apiserver {KUBE_VERSION} and etcd {ETCD_VERSION} with Go "
            "(once per machine; several minutes) ..."
        )


@kube.command()
@_name
@_port
def start(name: str, port: int) -> None:
    """Start etcd and kube-apiserver (building them with Go the first time); idempotent."""
    server = DevKube.named(name, port)
    before = server.status()
    if not before.running:
        _announce_build()
    status = server.start()
    verb = "already running" if before.running else "started"
    console.print(f"Kubernetes API server {verb}: {status.server} (pid {status.pid})")
    console.print(f"  certificates, etcd data and logs in {status.directory}", soft_wrap=True)
    console.print(f"  use it with: export KUBECONFIG={status.kubeconfig}", soft_wrap=True)


@kube.command("fetch")
def fetch_binaries() -> None:
    """Build kube-apiserver and etcd from the Go module proxy into the cache (once)."""
    _announce_build()
    binaries = fetch()
    console.print(f"kube-apiserver in {binaries.apiserver}", soft_wrap=True)
    console.print(f"etcd in {binaries.etcd}", soft_wrap=True)


@kube.command()
@_name
@_port
def stop(name: str, port: int) -> None:
    """Stop the API server and etcd this machine's callmap started."""
    stopped = DevKube.named(name, port).stop()
    console.print(
        "Kubernetes API server stopped" if stopped else "Kubernetes API server was not running"
    )


@kube.command()
@_name
@_port
def status(name: str, port: int) -> None:
    """Say whether the API server runs; exit 1 if it does not."""
    state = DevKube.named(name, port).status()
    console.print(
        f"Kubernetes API server {state.detail}: {state.server}"
        + (f" (pid {state.pid})" if state.pid else "")
    )
    console.print(f"  kubeconfig: {state.kubeconfig}", soft_wrap=True)
    if not state.running:
        sys.exit(1)
