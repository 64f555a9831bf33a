"""Real API servers (kube-apiserver and etcd) for tests: built once, started per use.

When the binaries cannot be built the tests that need them are skipped,
loudly, with the build's last lines; ``CALLMAP_REQUIRE_KUBE=1`` makes that a
failure instead (for CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devtools.kube import DevKube, DevKubeError, fetch
from devtools.process import free_port


def require_kube_binaries() -> None:
    """Build kube-apiserver and etcd unless the cache has them; skip (or fail) if not."""
    try:
        fetch()
    except DevKubeError as error:
        reason = f"SKIPPED LOUDLY: no Kubernetes API server binaries: {error}"
        if os.environ.get("CALLMAP_REQUIRE_KUBE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@contextmanager
def running_kube(directory: Path, **fields: Any) -> Iterator[DevKube]:
    """An API server of its own in ``directory`` on a free port, stopped at the end."""
    require_kube_binaries()
    kube = DevKube(directory, free_port(), **fields)
    try:
        kube.start()
        yield kube
    finally:
        kube.stop()
