"""The pod labels that select a workload's pods, for NetworkPolicies and Cilium.

Edges name workloads, not labels. Labels come, in order of preference, from:

1. a labels file (``--labels FILE``): YAML mapping ``namespace/workload`` (any
   cluster) or ``cluster/namespace/workload`` to labels;
2. pod identities (``callmap.pods.v1``): the labels that every live pod of the
   workload, in the workload's cluster, shares, minus those that differ per pod
   or per rollout (``pod-template-hash``, ``controller-revision-hash``, ...);
3. the convention: ``{CONVENTION_KEY: workload name}`` (by default
   ``app.kubernetes.io/name``; ``--label-key`` changes it).

Invalid label keys or values (a hostile pod can carry anything) are left out;
a workload whose labels end up empty falls back to the convention, because an
empty selector would select every pod of the namespace. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from callmap.wire import Endpoint, PodIdentity
from sinks.escape import is_label_key, is_label_value

DEFAULT_LABEL_KEY = "app.kubernetes.io/name"

# Labels that differ between pods of one workload or between its rollouts.
PER_POD_LABELS = frozenset(
    {
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "controller-uid",
        "job-name",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
        "batch.kubernetes.io/job-completion-index",
    }
)


@dataclass(frozen=True, slots=True)
class Selector:
    """Labels selecting a workload's pods, and where they came from."""

    labels: dict[str, str]
    source: str
    """``file``, ``pods`` or ``convention``."""


def _valid(labels: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        for key, value in labels.items()
        if key not in PER_POD_LABELS and is_label_key(key) and is_label_value(value)
    }


Key = tuple[str | None, str, str]
"""(cluster, namespace, workload name); cluster None: the workload of that name in any."""


class LabelBook:
    """Pod labels per (cluster, namespace, workload name)."""

    def __init__(
        self,
        known: Mapping[Key, Mapping[str, str]] | None = None,
        *,
        source: str = "file",
        convention_key: str = DEFAULT_LABEL_KEY,
        fallback: LabelBook | None = None,
    ) -> None:
        self._known = {key: _valid(labels) for key, labels in (known or {}).items()}
        self._source = source
        self._fallback = fallback
        self.convention_key = convention_key

    def over(self, fallback: LabelBook) -> LabelBook:
        """This book, asking ``fallback`` for workloads it does not know."""
        return LabelBook(
            self._known, source=self._source, convention_key=self.convention_key, fallback=fallback
        )

    @classmethod
    def from_pods(
        cls, pods: Iterable[PodIdentity], *, convention_key: str = DEFAULT_LABEL_KEY
    ) -> LabelBook:
        """Labels every live pod of a workload shares (all its pods if none is live)."""
        groups: dict[Key, list[PodIdentity]] = {}
        for pod in pods:
            groups.setdefault((pod.cluster, pod.namespace, pod.workload.name), []).append(pod)
        known: dict[Key, dict[str, str]] = {}
        for key, members in groups.items():
            live = [pod for pod in members if pod.deleted is None] or members
            shared = dict(live[0].labels)
            for pod in live[1:]:
                shared = {k: v for k, v in shared.items() if pod.labels.get(k) == v}
            known[key] = shared
        return cls(known, source="pods", convention_key=convention_key)

    @classmethod
    def from_mapping(
        cls, document: Mapping[str, Mapping[str, str]], *, convention_key: str = DEFAULT_LABEL_KEY
    ) -> LabelBook:
        """From a labels file's content: ``{"[cluster/]namespace/workload": {key: value}}``."""
        known: dict[Key, Mapping[str, str]] = {}
        for name, labels in document.items():
            parts = str(name).split("/")
            if len(parts) not in (2, 3) or not all(parts) or not isinstance(labels, Mapping):
                raise ValueError(
                    f"labels file: {name!r} is not '[cluster/]namespace/workload: {{labels}}'"
                )
            key: Key = (
                (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, parts[0], parts[1])
            )
            known[key] = {str(k): str(v) for k, v in labels.items()}
        return cls(known, source="file", convention_key=convention_key)

    def known(self, endpoint: Endpoint) -> Mapping[str, str] | None:
        """The labels known for the workload (not guessed from the convention key)."""
        return self._labels(endpoint)

    def _labels(self, endpoint: Endpoint) -> dict[str, str] | None:
        """Known labels of the workload in its cluster, else of that name in any cluster."""
        namespace, name = endpoint.namespace or "", endpoint.name or ""
        for key in ((endpoint.cluster, namespace, name), (None, namespace, name)):
            if self._known.get(key):
                return self._known[key]
        if endpoint.cluster is None:  # not placed in a cluster: of that name in one cluster only
            found = [v for (_, ns, n), v in self._known.items() if (ns, n) == (namespace, name)]
            return found[0] if len(found) == 1 and found[0] else None
        return None

    def selector(self, endpoint: Endpoint) -> Selector | None:
        """The selector of a workload's pods; None if no valid one can be written."""
        name = endpoint.name or ""
        labels = self._labels(endpoint)
        if labels:
            return Selector(dict(sorted(labels.items())), self._source)
        if self._fallback is not None:
            return self._fallback.selector(endpoint)
        if is_label_value(name) and name:
            return Selector({self.convention_key: name}, "convention")
        return None
