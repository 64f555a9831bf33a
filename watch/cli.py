"""``callmap watch``: publish pod, service and node identities to Kafka.

- From a cluster (the default): in-cluster, or ``--kubeconfig``/``--context``;
  one active instance per cluster through a Lease.
- ``--inventory FILE``: from a YAML or JSON inventory file, following its changes.
- ``--dump-inventory FILE``: list a cluster once and write its inventory (``-``: stdout).

SIGTERM and Ctrl-C stop it cleanly: pending records are flushed, the Lease released.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from callmap.config import Settings, load_settings
from callmap.errors import CallmapError
from callmap.optiongroups import metrics_port_option, start_timeout_option
from callmap.signals import run_until_signalled
from watch.options import (
    DEFAULT_HEARTBEAT,
    DEFAULT_LABEL_KEYS,
    DEFAULT_RETENTION,
    KubeSource,
    LabelPolicy,
    LeaseOptions,
    WatchOptions,
    WatchTimeouts,
)

log = logging.getLogger(__name__)

# Defaults shown by --help (slotted dataclasses keep no class-level defaults).
_LEASE, _TIMEOUTS, _LABELS = LeaseOptions(), WatchTimeouts(), LabelPolicy()


def run_until_stopped(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` until it ends or a stop signal cancels it (its clean-up runs);
    a callmap error inside it ends the command with its message."""
    try:
        run_until_signalled(main)
    except* CallmapError as group:
        raise click.ClickException(str(_first(group))) from None


@dataclass(frozen=True, slots=True)
class WatchCommand:
    """What ``callmap watch`` was asked to do, from its options and the environment."""

    cluster: str | None
    """The name stamped on every record (``--cluster`` or ``CALLMAP_CLUSTER``); None: the
    inventory file's, else the settings' default."""
    source: KubeSource
    """How to reach the API server."""
    inventory: Path | None
    """Publish this file instead of watching a cluster."""
    dump_to: str | None
    """List the cluster once and write its inventory here (``-``: stdout)."""
    lease: LeaseOptions | None
    """Leader election; None runs without a Lease."""
    labels: LabelPolicy
    """Which pod labels to keep."""
    timeouts: WatchTimeouts
    """List and watch timing."""
    retention: float
    """Seconds a deleted object's record stays before its tombstone."""
    poll_interval: float
    """Seconds between inventory checks."""
    heartbeat: float
    """Seconds between heartbeats (the cluster's id on callmap.clusters.v1)."""
    check_permissions: bool
    """Check RBAC at start."""
    start_timeout: float
    """Seconds to keep trying to reach Kafka at the start of a term."""
    metrics_port: int
    """Prometheus port; 0 turns it off."""


def _first(group: BaseExceptionGroup[CallmapError]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cluster", envvar="CALLMAP_CLUSTER", help="Cluster name stamped on every record.")
@click.option(
    "--inventory",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Publish this inventory file (and its changes) instead of watching a cluster.",
)
@click.option(
    "--dump-inventory",
    "dump_to",
    metavar="FILE",
    help="List the cluster once, write its inventory to FILE ('-': stdout), exit.",
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig file.")
@click.option("--context", help="Kubeconfig context (default: its current one).")
@click.option(
    "--in-cluster/--no-in-cluster",
    default=None,
    help="Use the pod's service account (default: when running in a pod).",
)
@click.option("--lease-name", default=_LEASE.name, show_default=True, help="Name of the Lease.")
@click.option(
    "--lease-namespace",
    envvar="CALLMAP_LEASE_NAMESPACE",
    default=_LEASE.namespace,
    show_default=True,
    help="Namespace of the Lease (env CALLMAP_LEASE_NAMESPACE).",
)
@click.option(
    "--identity",
    envvar="CALLMAP_POD_NAME",
    help="Holder identity for the Lease (env CALLMAP_POD_NAME; default: host-pid).",
)
@click.option(
    "--lease-duration",
    default=_LEASE.duration,
    show_default=True,
    help="Seconds a standby waits on an unrenewed Lease before taking it.",
)
@click.option(
    "--renew-deadline",
    default=_LEASE.renew_deadline,
    show_default=True,
    help="A leader that cannot renew for this long steps down.",
)
@click.option(
    "--retry-period",
    default=_LEASE.retry_period,
    show_default=True,
    help="Seconds between tries to acquire or renew the Lease.",
)
@click.option(
    "--no-leader-election", is_flag=True, help="Run without a Lease (one instance only!)."
)
@click.option(
    "--heartbeat",
    default=DEFAULT_HEARTBEAT,
    show_default=True,
    help="Seconds between the cluster's heartbeats (its id, for aggregators).",
)
@click.option(
    "--retention",
    default=DEFAULT_RETENTION,
    show_default=True,
    help="Seconds a deleted object's record stays before its tombstone.",
)
@click.option(
    "--label",
    "label_keys",
    multiple=True,
    help="Pod label to keep (repeat; a key ending in '/' keeps that prefix). "
    f"Default: {', '.join(DEFAULT_LABEL_KEYS)}.",
)
@click.option(
    "--max-labels", default=_LABELS.max_labels, show_default=True, help="Most labels per pod."
)
@click.option(
    "--watch-timeout",
    default=_TIMEOUTS.watch_timeout,
    show_default=True,
    help="Seconds the server keeps one watch request open.",
)
@click.option(
    "--inactivity-timeout",
    default=_TIMEOUTS.inactivity_timeout,
    show_default=True,
    help="Restart a watch silent for this long (keep it above --watch-timeout).",
)
@click.option(
    "--page-size", default=_TIMEOUTS.page_size, show_default=True, help="Objects per list page."
)
@click.option(
    "--poll-interval", default=1.0, show_default=True, help="Seconds between inventory checks."
)
@click.option("--skip-permission-check", is_flag=True, help="Do not check RBAC at start.")
@start_timeout_option()
@metrics_port_option(9811)
def watch(
    *,
    cluster: str | None,
    inventory: Path | None,
    dump_to: str | None,
    kubeconfig: str | None,
    context: str | None,
    in_cluster: bool | None,
    lease_name: str,
    lease_namespace: str,
    identity: str | None,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    no_leader_election: bool,
    heartbeat: float,
    retention: float,
    label_keys: tuple[str, ...],
    max_labels: int,
    watch_timeout: float,
    inactivity_timeout: float,
    page_size: int,
    poll_interval: float,
    skip_permission_check: bool,
    start_timeout: float,
    metrics_port: int,
) -> None:
    """Publish pod, service and node identities (from a cluster or a file) to Kafka."""
    if not logging.getLogger().handlers:  # run on its own, not under `callmap`
        logging.basicConfig(
            level="INFO",
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    try:
        settings = load_settings()
        lease = LeaseOptions(
            name=lease_name,
            namespace=lease_namespace,
            identity=identity or "",
            duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )
        command = WatchCommand(
            cluster=cluster,
            source=KubeSource(kubeconfig, context, in_cluster),
            inventory=inventory,
            dump_to=dump_to,
            lease=None if no_leader_election else lease,
            labels=LabelPolicy(keys=label_keys or DEFAULT_LABEL_KEYS, max_labels=max_labels),
            timeouts=WatchTimeouts(
                page_size=page_size,
                watch_timeout=watch_timeout,
                inactivity_timeout=inactivity_timeout,
            ),
            retention=retention,
            poll_interval=poll_interval,
            heartbeat=heartbeat,
            check_permissions=not skip_permission_check,
            start_timeout=start_timeout,
            metrics_port=metrics_port,
        )
        _watch(settings, command)
    except CallmapError as error:  # a bad setting or file, found before running
        raise click.ClickException(str(error)) from None


def _watch(settings: Settings, command: WatchCommand) -> None:
    if command.inventory is not None:
        from watch.filewatch import InventoryWatcher

        inventory = InventoryWatcher(
            settings,
            command.inventory,
            cluster=command.cluster,
            retention=command.retention,
            poll_interval=command.poll_interval,
            metrics_port=command.metrics_port,
            heartbeat=command.heartbeat,
            start_timeout=command.start_timeout,
        )
        run_until_stopped(inventory.run())
        return
    if command.dump_to is not None:
        cluster = command.cluster or settings.cluster
        _dump(command.source, cluster, command.labels, command.timeouts, command.dump_to)
        return
    from watch.kubewatch import KubeWatcher

    watcher = KubeWatcher(
        settings,
        WatchOptions(
            cluster=command.cluster or settings.cluster,
            source=command.source,
            labels=command.labels,
            timeouts=command.timeouts,
            lease=command.lease,
            retention=command.retention,
            check_permissions=command.check_permissions,
            metrics_port=command.metrics_port,
            heartbeat=command.heartbeat,
            start_timeout=command.start_timeout,
        ),
    )
    run_until_stopped(watcher.run())


def _dump(
    source: KubeSource, cluster: str, labels: LabelPolicy, timeouts: WatchTimeouts, target: str
) -> None:
    from watch.dump import dump_cluster

    text: list[str] = []

    async def dump() -> None:
        text.append(await dump_cluster(source, cluster, labels=labels, timeouts=timeouts))

    run_until_stopped(dump())
    if not text:
        sys.exit(1)
    if target == "-":
        click.echo(text[0], nl=False)
        return
    path = Path(target)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text[0], encoding="utf-8")
    temporary.replace(path)  # readers never see half a file
    click.echo(f"wrote {path}", err=True)
