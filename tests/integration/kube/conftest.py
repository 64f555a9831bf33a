"""The session-wide Kubernetes API server: real kube-apiserver and etcd on loopback.

``kube_api`` starts :class:`devtools.kube.DevKube` on free ports in pytest's
temporary directory and stops it at the end. Its binaries come from the cache
(``callmap dev kube fetch`` builds them); a machine that has not built them yet
builds them here, once, so the first test gets the time a cold build needs.

When they cannot be built the tests are skipped (:mod:`helpers.kubeapi`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers.kubeapi import running_kube
from helpers.kubewatch import Cluster, admin_client
from kubernetes_asyncio import client

from devtools.kube import KubeStatus, binaries_built

# A cold build of kube-apiserver and etcd on two cores; see docs/development.md.
BUILD_TIMEOUT = 3600
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if binaries_built():
        return
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStatus]:
    """A running API server: ``.server`` is its URL, ``.kubeconfig`` an admin kubeconfig."""
    with running_kube(tmp_path_factory.mktemp("kube")) as kube:
        yield kube.status()


@pytest.fixture
async def admin(kube_api: KubeStatus) -> AsyncIterator[client.ApiClient]:
    """A client authenticated as the kubeconfig's admin (client certificate, system:masters)."""
    async with admin_client(kube_api) as api:
        yield api


@pytest.fixture
async def ns(admin: client.ApiClient) -> str:
    name = f"watch-{uuid.uuid4().hex[:8]}"
    await client.CoreV1Api(admin).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
async def cluster(admin: client.ApiClient, ns: str) -> Cluster:
    return Cluster(admin, ns)
