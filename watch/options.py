"""What the watcher can be told: small frozen dataclasses, one docstring per field.

The command line fills them in (``watch/cli.py``); tests build them directly
with short timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callmap.backoff import DEFAULT_START_TIMEOUT

DEFAULT_LABEL_KEYS: tuple[str, ...] = (
    "app",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "k8s-app",
    "component",
    "tier",
    "version",
)
WORKLOAD_ANNOTATION = "callmap.io/workload"
DEFAULT_RETENTION = 3600.0


DEFAULT_HEARTBEAT = 30.0
"""Seconds between two heartbeats of the watch leader (the cluster's id, for aggregators)."""


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    """Which pod labels travel on ``PodIdentity.labels`` (a bounded subset)."""

    keys: tuple[str, ...] = DEFAULT_LABEL_KEYS
    """Label keys to keep, in order of preference; a key ending in ``/`` keeps
    every label with that prefix."""
    max_labels: int = 10
    """At most this many labels per pod; the first keys in ``keys`` win."""
    max_value_length: int = 256
    """Longer values are cut to this many characters."""


@dataclass(frozen=True, slots=True)
class WatchTimeouts:
    """How the list-then-watch loops talk to the API server."""

    page_size: int = 500
    """Objects per list page (``limit``); a list never holds more than a page."""
    watch_timeout: float = 240.0
    """Server-side timeout of one watch request (``timeoutSeconds``); the
    server ends the request then, with a bookmark, and the watch resumes."""
    inactivity_timeout: float = 300.0
    """A watch that sends nothing (no event, no bookmark) for this long is
    restarted. Keep it above ``watch_timeout``: an idle server sends its
    bookmark only as a request ends."""
    request_timeout: float = 30.0
    """Seconds to connect and to wait between bytes of a list or get."""
    initial_backoff: float = 0.5
    """First pause after an API error; doubles on each further error."""
    max_backoff: float = 30.0
    """Longest pause between two attempts."""


@dataclass(frozen=True, slots=True)
class LeaseOptions:
    """Leader election through a coordination.k8s.io/v1 Lease."""

    name: str = "callmap-watch"
    """The Lease's name."""
    namespace: str = "default"
    """The Lease's namespace (the chart uses the release namespace)."""
    identity: str = ""
    """This instance's holder identity; empty means host name and process id."""
    duration: float = 15.0
    """Seconds a leader holds the lease without renewing; a standby takes over
    after it has seen the lease unchanged for this long."""
    renew_deadline: float = 10.0
    """A leader that could not renew for this long steps down."""
    retry_period: float = 2.0
    """Seconds between two attempts to acquire or renew."""


@dataclass(frozen=True, slots=True)
class KubeSource:
    """Where the Kubernetes API is and who the watcher is to it."""

    kubeconfig: str | None = None
    """Path of a kubeconfig; None: ``$KUBECONFIG`` or ``~/.kube/config``."""
    context: str | None = None
    """The kubeconfig context to use; None: its current context."""
    in_cluster: bool | None = None
    """Use the pod's service account; None: when ``KUBERNETES_SERVICE_HOST`` is set."""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """Everything the Kubernetes watcher needs besides the shared settings."""

    cluster: str
    """This cluster's name, stamped on every record."""
    source: KubeSource = field(default_factory=KubeSource)
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    timeouts: WatchTimeouts = field(default_factory=WatchTimeouts)
    lease: LeaseOptions | None = field(default_factory=LeaseOptions)
    """Leader election; None runs without it (one instance only!)."""
    retention: float = DEFAULT_RETENTION
    """Seconds a deleted object's record stays before its tombstone."""
    sweep_interval: float = 10.0
    """Seconds between two looks for deleted records whose retention ended."""
    check_permissions: bool = True
    """Ask the API server at start whether every RBAC rule is granted."""
    metrics_port: int = 0
    """Prometheus port; 0 turns it off."""
    heartbeat: float = DEFAULT_HEARTBEAT
    """Seconds between two heartbeats (the cluster's id on callmap.clusters.v1)."""
    start_timeout: float = DEFAULT_START_TIMEOUT
    """Seconds a term keeps trying to reach Kafka before the watcher fails."""
