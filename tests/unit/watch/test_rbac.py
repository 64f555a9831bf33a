"""The RBAC rules are exactly what the watcher uses: every resource it reads, nothing more."""

from __future__ import annotations

from watch.kubeclient import (
    CLUSTER_ID_NAMESPACE,
    ENDPOINT_SLICE,
    NAMESPACE,
    NODE,
    OWNERS,
    POD,
    SERVICE,
    SERVICE_EXPORT,
)
from watch.options import LeaseOptions
from watch.permissions import Permission, permissions
from watch.rbac import CLUSTER_RULES, lease_rules, manifests


def granted(group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in CLUSTER_RULES
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_watched_kinds_may_be_listed_and_watched_only() -> None:
    for resource in (POD, SERVICE, ENDPOINT_SLICE, NODE, SERVICE_EXPORT):
        assert granted(resource.group, resource.plural) == {"list", "watch"}


def test_owner_kinds_may_also_be_fetched_one_by_one() -> None:
    for resource in OWNERS.values():
        assert granted(resource.group, resource.plural) == {"get", "list", "watch"}


def test_no_rule_grants_anything_the_watcher_does_not_read() -> None:
    read = (POD, SERVICE, ENDPOINT_SLICE, NODE, SERVICE_EXPORT, NAMESPACE, *OWNERS.values())
    used = {(r.group, r.plural) for r in read}
    listed = {
        (g, r) for rule in CLUSTER_RULES for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert listed == used
    assert all("*" not in str(rule) for rule in CLUSTER_RULES + lease_rules())


def test_only_kube_system_may_be_read_of_the_namespaces_for_the_clusters_id() -> None:
    (rule,) = [r for r in CLUSTER_RULES if "namespaces" in r["resources"]]
    assert rule["verbs"] == ["get"] and rule["resourceNames"] == [CLUSTER_ID_NAMESPACE]


def test_the_lease_may_be_created_and_only_the_named_one_read_and_written() -> None:
    assert lease_rules("my-lease") == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["my-lease"],
            "verbs": ["get", "update"],
        },
    ]


def test_every_permission_is_checked_where_it_is_used() -> None:
    checked = list(permissions(LeaseOptions(name="l", namespace="callmap")))
    assert Permission("", "pods", "watch") in checked
    assert Permission("apps", "replicasets", "get") in checked
    assert Permission("coordination.k8s.io", "leases", "update", "callmap", "l") in checked
    assert Permission("coordination.k8s.io", "leases", "create", "callmap") in checked
    assert Permission("", "namespaces", "get", None, "kube-system") in checked
    assert Permission("multicluster.x-k8s.io", "serviceexports", "watch") in checked
    assert len(checked) == 32
    assert str(checked[-1]) == "update leases.coordination.k8s.io named l in namespace callmap"


def test_manifests_bind_both_roles_to_the_service_account() -> None:
    objects = manifests("callmap-watch", "callmap")
    assert [o["kind"] for o in objects] == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ]
    assert objects[2]["metadata"]["namespace"] == "callmap"
    assert objects[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "callmap-watch", "namespace": "callmap"}
    ]
