"""Ask the API server, before anything else, whether every RBAC rule is granted.

A watcher missing a permission would otherwise fail later, on the first
owner it fetches or the first Lease it writes, with less to go on. One
SelfSubjectAccessReview per verb and resource of :mod:`watch.rbac` (any
authenticated user may ask about itself) names every missing permission in a
single ``PermanentError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubernetes_asyncio import client

from callmap.errors import PermanentError
from watch.kubeclient import map_api_errors
from watch.options import LeaseOptions
from watch.rbac import CLUSTER_RULES, PolicyRule, lease_rules


@dataclass(frozen=True, slots=True)
class Permission:
    group: str
    resource: str
    verb: str
    namespace: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else " cluster-wide"
        named = f" named {self.name}" if self.name else ""
        return f"{self.verb} {what}{named}{where}"


def permissions(lease: LeaseOptions | None) -> Iterator[Permission]:
    """Every single permission the rules grant, as the watcher will use them."""
    yield from expand_rules(CLUSTER_RULES, None)
    if lease is not None:
        yield from expand_rules(lease_rules(lease.name), lease.namespace)


def expand_rules(rules: list[PolicyRule], namespace: str | None) -> Iterator[Permission]:
    """Each verb on each resource (and name) that ``rules`` grant, one by one."""
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    names: list[str | None] = list(rule.get("resourceNames", [])) or [None]
                    for name in names:
                        yield Permission(group, resource, verb, namespace, name)


async def missing_permissions(api: client.ApiClient, lease: LeaseOptions | None) -> list[str]:
    authorization = client.AuthorizationV1Api(api)
    missing = []
    for permission in permissions(lease):
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    group=permission.group,
                    resource=permission.resource,
                    verb=permission.verb,
                    namespace=permission.namespace,
                    name=permission.name,
                )
            )
        )
        with map_api_errors("check permissions"):
            answer = await authorization.create_self_subject_access_review(review)
        if not answer.status.allowed:
            missing.append(str(permission))
    return missing


async def check_permissions(api: client.ApiClient, lease: LeaseOptions | None) -> None:
    """PermanentError naming every permission of the RBAC rules that is not granted."""
    missing = await missing_permissions(api, lease)
    if missing:
        raise PermanentError(
            "the watcher's service account lacks: "
            + "; ".join(missing)
            + " (see docs/watch.md, RBAC)"
        )
