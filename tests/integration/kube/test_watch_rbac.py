"""The documented RBAC rules are exactly enough: the watcher runs as a ServiceAccount
bound to them (a real token from the TokenRequest API), and without any one of them
it refuses to start, naming what is missing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers.identitytopics import eventually
from helpers.kubewatch import Cluster, options, pod_named, running, token_kubeconfig
from kubernetes_asyncio import client

from callmap.config import Settings
from callmap.errors import PermanentError
from devtools.kube import KubeStatus
from watch.kubeclient import api_client
from watch.kubewatch import KubeWatcher
from watch.options import KubeSource, LeaseOptions
from watch.permissions import expand_rules, missing_permissions
from watch.rbac import CLUSTER_RULES, PolicyRule, lease_rules

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

LEASE_RULES = lease_rules("rbac-lease")
EVERY_RULE = [("cluster", i) for i in range(len(CLUSTER_RULES))] + [
    ("lease", i) for i in range(len(LEASE_RULES))
]


async def service_account(
    admin: client.ApiClient,
    kube_api: KubeStatus,
    namespace: str,
    tmp_path: Path,
    *,
    without: tuple[str, int] | None = None,
) -> KubeSource:
    """A ServiceAccount bound to the rules (less one), and a kubeconfig with its token."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    name = f"watch-{uuid.uuid4().hex[:6]}"
    cluster_rules = [r for i, r in enumerate(CLUSTER_RULES) if without != ("cluster", i)]
    namespace_rules = [r for i, r in enumerate(LEASE_RULES) if without != ("lease", i)]
    await core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    group = "rbac.authorization.k8s.io"
    await rbac.create_cluster_role({"metadata": {"name": name}, "rules": cluster_rules})
    await rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        }
    )
    await rbac.create_namespaced_role(
        namespace, {"metadata": {"name": name}, "rules": namespace_rules}
    )
    await rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": group, "kind": "Role", "name": name},
            "subjects": subjects,
        },
    )
    return await token_kubeconfig(admin, kube_api, namespace, name, tmp_path)


async def settled_missing(source: KubeSource, lease: LeaseOptions, expected: set[str]) -> set[str]:
    """What the account lacks, once the authorizer has caught up with the new bindings."""
    deadline = time.monotonic() + 15
    async with api_client(source) as api:
        while True:
            missing = set(await missing_permissions(api, lease))
            if missing == expected or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.1)


def expanded(rules: list[PolicyRule], namespace: str | None) -> set[str]:
    return {str(permission) for permission in expand_rules(rules, namespace)}


@pytest.fixture
async def lease(ns: str) -> LeaseOptions:
    return LeaseOptions(
        name="rbac-lease", namespace=ns, duration=5, renew_deadline=3, retry_period=0.5
    )


async def test_the_watcher_runs_with_exactly_the_documented_rules(
    kube_api: KubeStatus,
    settings: Settings,
    admin: client.ApiClient,
    cluster: Cluster,
    ns: str,
    lease: LeaseOptions,
    tmp_path: Path,
) -> None:
    source = await service_account(admin, kube_api, ns, tmp_path)
    assert await settled_missing(source, lease, set()) == set()
    web = await cluster.deployment("web")
    rs = await cluster.replica_set("web-7d9f", web)
    await cluster.pod("web-7d9f-a", ("10.5.0.1",), owner=rs)
    watch_options = options(kube_api, source=source, lease=lease)
    async with running(settings, watch_options) as watcher:
        await eventually(
            settings, watch_options.cluster, lambda state: pod_named(state, ns, "web-7d9f-a")
        )
        assert watcher.leading


@pytest.mark.parametrize("without", EVERY_RULE, ids=lambda w: f"{w[0]}-rule-{w[1]}")
async def test_without_any_one_rule_the_watcher_refuses_to_start_and_says_why(
    kube_api: KubeStatus,
    settings: Settings,
    admin: client.ApiClient,
    ns: str,
    lease: LeaseOptions,
    tmp_path: Path,
    without: tuple[str, int],
) -> None:
    source = await service_account(admin, kube_api, ns, tmp_path, without=without)
    kind, index = without
    removed = CLUSTER_RULES[index] if kind == "cluster" else LEASE_RULES[index]
    lacking = expanded([removed], None if kind == "cluster" else ns)
    assert await settled_missing(source, lease, lacking) == lacking
    watcher = KubeWatcher(settings, options(kube_api, source=source, lease=lease))
    with pytest.raises(PermanentError) as refused:
        await asyncio.wait_for(watcher.run(), 30)
    assert all(permission in str(refused.value) for permission in lacking)


async def errors_of(run: AsyncIterator[None] | Any) -> list[BaseException]:
    try:
        await asyncio.wait_for(run, 30)
    except BaseExceptionGroup as group:
        return list(group.exceptions)
    except Exception as error:
        return [error]
    return []


async def test_unchecked_a_missing_rule_still_stops_the_watcher_loudly(
    kube_api: KubeStatus,
    settings: Settings,
    admin: client.ApiClient,
    ns: str,
    lease: LeaseOptions,
    tmp_path: Path,
) -> None:
    slices = ("cluster", 1)  # list and watch endpointslices
    source = await service_account(admin, kube_api, ns, tmp_path, without=slices)
    lacking = expanded([CLUSTER_RULES[1]], None)
    assert await settled_missing(source, lease, lacking) == lacking
    unchecked = options(kube_api, source=source, lease=lease, check_permissions=False)
    (error,) = await errors_of(KubeWatcher(settings, unchecked).run())
    assert isinstance(error, PermanentError)
    assert str(error).startswith("list endpointslices: HTTP 403: endpointslices.discovery.k8s.io")
