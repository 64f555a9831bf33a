"""The exact RBAC rules ``callmap watch`` needs, as data (the deploy issue renders them).

Two objects: a ClusterRole with :data:`CLUSTER_RULES` (read the kinds records
are made of, and the controllers pods are owned by), bound to the watcher's
ServiceAccount with a ClusterRoleBinding; and a Role in the Lease's namespace
with :func:`lease_rules`, bound with a RoleBinding. Nothing else: the watcher
never writes anything but its Lease. Each rule is a PolicyRule as the API
spells it (``apiGroups``, ``resources``, ``verbs``, ``resourceNames``).

What each rule is for:

- pods, services, nodes; endpointslices: list and watch (the records).
- replicasets, deployments, statefulsets, daemonsets; jobs, cronjobs: get (an
  owner is fetched the first time a pod needs it), list and watch (cached
  owners are kept fresh).
- serviceexports (``multicluster.x-k8s.io``, the MCS API): list and watch, to
  mark exported services (only used where the CRD is installed).
- namespaces: get ``kube-system`` only (its UID is the cluster's id, sent
  with the heartbeat).
- leases: create (the first watcher creates the Lease; ``create`` cannot be
  narrowed to a name), get and update of that one Lease (acquire, renew,
  release).
"""

from __future__ import annotations

from typing import Any

from watch.options import LeaseOptions

PolicyRule = dict[str, list[str]]

CLUSTER_RULES: list[PolicyRule] = [
    {"apiGroups": [""], "resources": ["pods", "services", "nodes"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["replicasets", "deployments", "statefulsets", "daemonsets"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["multicluster.x-k8s.io"],
        "resources": ["serviceexports"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "resourceNames": ["kube-system"],
        "verbs": ["get"],
    },
]


def lease_rules(name: str = LeaseOptions().name) -> list[PolicyRule]:
    """The rules of the Role in the Lease's namespace."""
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [name],
            "verbs": ["get", "update"],
        },
    ]


def manifests(
    service_account: str, namespace: str, lease: LeaseOptions | None = None
) -> list[dict[str, Any]]:
    """ClusterRole, Role and their bindings for ``service_account`` in ``namespace``."""
    lease = lease or LeaseOptions(namespace=namespace)
    name = "callmap-watch"
    subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]
    group = "rbac.authorization.k8s.io"
    return [
        {
            "apiVersion": f"{group}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": CLUSTER_RULES,
        },
        {
            "apiVersion": f"{group}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": name},
            "subjects": subject,
        },
        {
            "apiVersion": f"{group}/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": lease.namespace},
            "rules": lease_rules(lease.name),
        },
        {
            "apiVersion": f"{group}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": lease.namespace},
            "roleRef": {"apiGroup": group, "kind": "Role", "name": name},
            "subjects": subject,
        },
    ]
