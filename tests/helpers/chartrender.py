"""The chart rendered by a real Helm, and the lookups the deploy tests make in it.

Helm is built from the Go module proxy into the cache by ``callmap dev helm
fetch`` (``make test`` does it first); a machine that has not built it yet
builds it here, once. When it cannot be built, the tests that render the chart
are skipped, loudly, with the build's error; ``CALLMAP_REQUIRE_HELM=1`` makes
that a failure instead (for CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import helm as devhelm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / devhelm.CHART
EVERYTHING = ROOT / "tests" / "unit" / "deploy" / "values-everything.yaml"
WORKLOAD_KINDS = ("DaemonSet", "Deployment", "Job")


@dataclass(frozen=True)
class Rendered:
    """The objects of one rendering, with the lookups the tests need."""

    documents: list[dict[str, Any]]
    namespace: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if d["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        return found

    def workloads(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Each workload with its pod spec."""
        for document in self.documents:
            if document["kind"] in WORKLOAD_KINDS:
                yield document, document["spec"]["template"]["spec"]

    def component(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The workload of one component (``watch``, ``sink-sqlite``) and its only container."""
        for document, pod in self.workloads():
            labels = document["metadata"]["labels"]
            if labels["app.kubernetes.io/component"] == name:
                (container,) = pod["containers"]
                return pod, container
        raise KeyError(name)


def helm_or_skip() -> Path:
    try:
        return devhelm.fetch()
    except devhelm.DevHelmError as error:
        reason = f"no helm binary: {error}"
        if os.environ.get("CALLMAP_REQUIRE_HELM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def render(namespace: str = "callmap", **options: Any) -> Rendered:
    """The chart rendered by helm template (options: release, values, set_values)."""
    return Rendered(devhelm.render(CHART, namespace=namespace, **options), namespace)
