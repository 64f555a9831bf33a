"""The chart grants the watcher exactly the rules watch/rbac.py holds, and nobody else anything.

watch/rbac.py is what the watcher checks at start (one SelfSubjectAccessReview
per permission) and what tests/integration/kube/test_watch_rbac.py proves is
enough and needed, rule by rule; tests/integration/kube/test_chart_apply.py
runs the watcher on the chart's own objects.
"""

from __future__ import annotations

from pathlib import Path

from helpers.chartrender import Rendered, render

from watch.options import LeaseOptions
from watch.permissions import expand_rules, permissions
from watch.rbac import CLUSTER_RULES, lease_rules


def lease_of(chart: Rendered) -> LeaseOptions:
    _, container = chart.component("watch")
    args = container["args"]
    return LeaseOptions(
        name=args[args.index("--lease-name") + 1],
        namespace=args[args.index("--lease-namespace") + 1],
    )


def test_the_cluster_role_is_the_watchers_cluster_rules(chart: Rendered) -> None:
    (role,) = chart.of_kind("ClusterRole")
    assert role["rules"] == CLUSTER_RULES


def test_the_role_holds_the_lease_rules_in_the_lease_namespace(chart: Rendered) -> None:
    (role,) = chart.of_kind("Role")
    lease = lease_of(chart)
    assert role["rules"] == lease_rules(lease.name)
    assert role["metadata"]["namespace"] == lease.namespace == chart.namespace


def test_every_granted_permission_is_one_the_watcher_checks_and_no_more(chart: Rendered) -> None:
    (cluster_role,) = chart.of_kind("ClusterRole")
    (role,) = chart.of_kind("Role")
    granted = set(expand_rules(cluster_role["rules"], None))
    granted |= set(expand_rules(role["rules"], role["metadata"]["namespace"]))
    assert granted == set(permissions(lease_of(chart)))


def test_both_bindings_bind_the_watchers_account_only(chart: Rendered) -> None:
    pod, _ = chart.component("watch")
    expected = [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": chart.namespace}
    ]
    (cluster_binding,) = chart.of_kind("ClusterRoleBinding")
    (binding,) = chart.of_kind("RoleBinding")
    assert cluster_binding["subjects"] == binding["subjects"] == expected
    assert cluster_binding["roleRef"]["name"] == chart.of_kind("ClusterRole")[0]["metadata"]["name"]
    assert binding["roleRef"]["name"] == chart.of_kind("Role")[0]["metadata"]["name"]


def test_without_the_watcher_there_is_no_rbac_at_all(helm: Path) -> None:
    rendered = render(set_values=["watch.enabled=false"])
    kinds = {d["kind"] for d in rendered.documents}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
