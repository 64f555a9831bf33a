"""The chart's objects are accepted by a real API server, and its pods by Pod Security admission.

Every object ``helm template`` renders, with defaults and with every option
(tests/unit/deploy/values-everything.yaml), is created with ``dryRun=All`` and
strict field validation: an unknown field, a bad enum or a malformed quantity
is an error, as it is for ``kubectl apply --dry-run=server``. ServiceMonitor
and PrometheusRule are checked against minimal copies of the Prometheus
Operator's CRDs (only the fields the chart writes, typed and constrained as
upstream types them).

Pod templates are created as Pods in namespaces that enforce the Pod Security
Standards: every component but the capture agent passes "restricted", and the
capture agent needs exactly four exceptions from "baseline" (host network,
hostPath, hostPort, capabilities), which the docs name.

Then the watcher runs as the chart's own ServiceAccount, bound by the chart's
own RBAC objects: it passes its permission check, takes its Lease and publishes.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.identitytopics import eventually
from helpers.kubewatch import Cluster, options, pod_named, running, token_kubeconfig
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

from callmap.config import Settings
from devtools import helm as devhelm
from devtools.kube import KubeStatus
from watch.kubeclient import api_client
from watch.options import LeaseOptions
from watch.permissions import missing_permissions

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / devhelm.CHART
EVERYTHING = ROOT / "tests" / "unit" / "deploy" / "values-everything.yaml"
WORKLOADS = ("DaemonSet", "Deployment", "Job")
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")

# Prometheus durations (30s, 1m30s, 500ms), as the CRD's pattern spells them.
DURATION = (
    "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
# The fields of monitoring.coreos.com/v1 ServiceMonitor the chart writes, as the
# Prometheus Operator's CRD (0.84) types them; everything else is pruned or refused.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors,
          singular: servicemonitor, shortNames: [smon]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              required: [endpoints, selector]
              properties:
                jobLabel: {type: string}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      scheme: {type: string, enum: [http, https]}
                      interval: {type: string, pattern: DURATION}
                selector:
                  type: object
                  x-kubernetes-map-type: atomic
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                    matchExpressions:
                      type: array
                      items:
                        type: object
                        required: [key, operator]
                        properties:
                          key: {type: string}
                          operator: {type: string}
                          values: {type: array, items: {type: string}}
""".replace("DURATION", f"'{DURATION}'")

# The fields of monitoring.coreos.com/v1 PrometheusRule the chart writes, as the
# Prometheus Operator's CRD (0.84) types them.
PROMETHEUS_RULE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules,
          singular: prometheusrule, shortNames: [promrule]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      interval: {type: string, pattern: DURATION}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {x-kubernetes-int-or-string: true}
                            for: {type: string, pattern: DURATION}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
""".replace("DURATION", f"'{DURATION}'")


def helm_or_skip() -> None:
    try:
        devhelm.fetch()
    except devhelm.DevHelmError as error:
        reason = f"no helm binary: {error}"
        if os.environ.get("CALLMAP_REQUIRE_HELM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def render(
    namespace: str, release: str = "callmap", everything: bool = False
) -> list[dict[str, Any]]:
    helm_or_skip()
    values = [EVERYTHING] if everything else []
    return devhelm.render(CHART, namespace=namespace, release=release, values=values)


async def new_namespace(admin: client.ApiClient, labels: dict[str, str] | None = None) -> str:
    # Left behind: without a namespace controller a deleted namespace never goes away.
    name = f"chart-{uuid.uuid4().hex[:8]}"
    body = {"metadata": {"name": name, "labels": labels or {}}}
    await client.CoreV1Api(admin).create_namespace(body)
    return name


@pytest.fixture
async def service_monitors(admin: client.ApiClient) -> None:
    """The ServiceMonitor and PrometheusRule kinds, registered and established."""
    extensions = client.ApiextensionsV1Api(admin)
    for text in (SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD):
        crd = yaml.safe_load(text)
        try:
            await extensions.create_custom_resource_definition(crd)
        except ApiException as error:
            if error.status != 409:
                raise
        await _established(extensions, crd["metadata"]["name"])


async def _established(extensions: client.ApiextensionsV1Api, name: str) -> None:
    for _ in range(100):
        current = await extensions.read_custom_resource_definition(name)
        if {c.type: c.status for c in current.status.conditions or []}.get("Established") == "True":
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"the CRD {name} never became established")


async def dynamic(admin: client.ApiClient, tmp_path: Path) -> DynamicClient:
    # A discovery cache of its own: the CRD above must be seen.
    return await DynamicClient(admin, cache_file=str(tmp_path / "discovery.json"))


class Refused(Exception):
    """The API server answered a create with a failure Status."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status.get('code')}: {status.get('message')}")
        self.code = status.get("code")


async def create(
    api: DynamicClient, document: dict[str, Any], namespace: str, dry_run: bool = True
) -> dict[str, Any]:
    """Create ``document`` (by default as a strict dry run); Refused with the server's reason.

    The dynamic client hands back a refusal as a Status object instead of raising.
    """
    resource = await api.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    options: dict[str, Any] = {"query_params": [("fieldValidation", "Strict")]}
    if dry_run:
        options["dry_run"] = "All"
    answer: dict[str, Any] = (
        await api.create(resource, body=document, namespace=namespace, **options)
    ).to_dict()
    if answer.get("kind") == "Status" and answer.get("status") == "Failure":
        raise Refused(answer)
    return answer


@pytest.mark.parametrize("everything", [False, True], ids=["defaults", "everything"])
async def test_every_object_is_accepted_by_the_api_server(
    admin: client.ApiClient, service_monitors: None, tmp_path: Path, everything: bool
) -> None:
    namespace = await new_namespace(admin)
    documents = render(namespace, release=f"r{uuid.uuid4().hex[:6]}", everything=everything)
    api = await dynamic(admin, tmp_path)
    accepted = []
    for document in documents:
        created = await create(api, document, namespace)
        assert created["metadata"]["name"] == document["metadata"]["name"]
        accepted.append(document["kind"])
    assert {"DaemonSet", "Deployment", "ClusterRole", "Role", "NetworkPolicy"} <= set(accepted)
    assert ("ServiceMonitor" in accepted) == everything
    assert ("PrometheusRule" in accepted) == everything


async def test_strict_validation_does_refuse_a_field_the_api_does_not_have(
    admin: client.ApiClient, tmp_path: Path
) -> None:
    namespace = await new_namespace(admin)
    (daemonset,) = [d for d in render(namespace) if d["kind"] == "DaemonSet"]
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    api = await dynamic(admin, tmp_path)
    with pytest.raises(Refused) as refused:
        await create(api, daemonset, namespace)
    assert refused.value.code == 400 and 'unknown field "spec.template' in str(refused.value)


def as_pods(documents: list[dict[str, Any]], namespace: str) -> dict[str, dict[str, Any]]:
    """Each workload's pod template as the Pod its controller would create."""
    return {
        document["metadata"]["labels"]["app.kubernetes.io/component"]: {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": document["metadata"]["name"],
                "namespace": namespace,
                "labels": document["spec"]["template"]["metadata"]["labels"],
            },
            "spec": document["spec"]["template"]["spec"],
        }
        for document in documents
        if document["kind"] in WORKLOADS
    }


async def create_pod(admin: client.ApiClient, pod: dict[str, Any]) -> None:
    core = client.CoreV1Api(admin)
    namespace = pod["metadata"]["namespace"]
    await core.create_namespaced_pod(namespace, pod, dry_run="All", field_validation="Strict")


def message(error: ApiException) -> str:
    text: str = yaml.safe_load(error.body)["message"]
    return text


def violations(error: ApiException) -> set[str]:
    """The Pod Security checks a refusal names: 'host namespaces', 'hostPort', ..."""
    listed = message(error).split('violates PodSecurity "', 1)[1].split(": ", 1)[1]
    return {re.sub(r" \(.*", "", part) for part in re.split(r"\), ", listed)}


@pytest.mark.parametrize("everything", [False, True], ids=["defaults", "everything"])
async def test_every_pod_but_the_capture_agent_meets_the_restricted_standard(
    admin: client.ApiClient, everything: bool
) -> None:
    namespace = await new_namespace(admin, {"pod-security.kubernetes.io/enforce": "restricted"})
    pods = as_pods(render(namespace, everything=everything), namespace)
    capture = pods.pop("capture")
    assert len(pods) >= 4
    for pod in pods.values():
        await create_pod(admin, pod)
    with pytest.raises(ApiException) as refused:
        await create_pod(admin, capture)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("values", "capabilities"),
    # NET_ADMIN by default: the node's connection tracking (capture.conntrack).
    [(False, '"NET_ADMIN", "NET_RAW"'), (True, '"NET_ADMIN", "NET_RAW"')],
    ids=["defaults", "dns-only-with-net-admin"],
)
async def test_the_capture_agent_needs_exactly_four_exceptions_from_baseline(
    admin: client.ApiClient, values: bool, capabilities: str
) -> None:
    baseline = await new_namespace(admin, {"pod-security.kubernetes.io/enforce": "baseline"})
    capture = as_pods(render(baseline, everything=values), baseline)["capture"]
    with pytest.raises(ApiException) as refused:
        await create_pod(admin, capture)
    assert violations(refused.value) == {
        "non-default capabilities",  # NET_RAW and NET_ADMIN
        "host namespaces",  # the node's network
        "hostPath volumes",  # the host's /proc, read-only
        "hostPort",  # the metrics port, on the node's network
    }
    assert f"must not include {capabilities} in securityContext" in message(refused.value)
    privileged = await new_namespace(admin, {"pod-security.kubernetes.io/enforce": "privileged"})
    await create_pod(admin, as_pods(render(privileged, everything=values), privileged)["capture"])


@pytest.mark.kafka
async def test_the_watcher_runs_on_the_charts_own_service_account_and_rbac(
    kube_api: KubeStatus,
    settings: Settings,
    admin: client.ApiClient,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    namespace = await new_namespace(admin)
    release = f"r{uuid.uuid4().hex[:6]}"
    documents = render(namespace, release=release)
    api = await dynamic(admin, tmp_path)
    for document in documents:  # created for real this time
        if document["kind"] in RBAC_KINDS:
            await create(api, document, namespace, dry_run=False)
    (watch,) = [
        d
        for d in documents
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-watch")
    ]
    pod = watch["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    lease = LeaseOptions(
        name=args[args.index("--lease-name") + 1],
        namespace=args[args.index("--lease-namespace") + 1],
        duration=5,
        renew_deadline=3,
        retry_period=0.5,
    )
    source = await token_kubeconfig(admin, kube_api, namespace, pod["serviceAccountName"], tmp_path)

    async with api_client(source) as as_watcher:  # the authorizer learns new bindings in a moment
        for _ in range(100):
            if not await missing_permissions(as_watcher, lease):
                break
            await asyncio.sleep(0.1)
        assert await missing_permissions(as_watcher, lease) == []

    web = await cluster.deployment("web")
    replicas = await cluster.replica_set("web-7d9f", web)
    await cluster.pod("web-7d9f-a", ("10.5.0.1",), owner=replicas)
    watch_options = options(kube_api, source=source, lease=lease)
    async with running(settings, watch_options) as watcher:
        await eventually(
            settings,
            watch_options.cluster,
            lambda state: pod_named(state, cluster.ns, "web-7d9f-a"),
        )
        assert watcher.leading


def helm(kube_api: KubeStatus, *args: str) -> str:
    """Run helm against the test API server; its output, or the test fails with its error."""
    helm_or_skip()
    environment = devhelm.helm_environment() | {"KUBECONFIG": str(kube_api.kubeconfig)}
    command = [str(devhelm.fetch()), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result.stdout


async def test_install_upgrade_and_uninstall_as_the_docs_say(
    kube_api: KubeStatus, admin: client.ApiClient
) -> None:
    # No controllers run here, so no pod ever starts: hooks (the topics Job) would wait forever.
    namespace = await new_namespace(admin)
    release = f"r{uuid.uuid4().hex[:6]}"
    common = ["--namespace", namespace, "--no-hooks"]
    helm(kube_api, "install", release, str(CHART), *common)
    helm(kube_api, "upgrade", release, str(CHART), *common, "--values", str(EVERYTHING))
    apps = client.AppsV1Api(admin)
    streams = await apps.read_namespaced_deployment(f"{release}-callmap-streams", namespace)
    assert streams.spec.replicas == 4  # values-everything.yaml took effect
    helm(kube_api, "uninstall", release, "--namespace", namespace)
    claims = await client.CoreV1Api(admin).list_namespaced_persistent_volume_claim(namespace)
    # Claims outlive the release, and an upgrade that stops using one (sqlite's, here).
    kept = {c.metadata.name for c in claims.items}
    assert kept == {f"{release}-callmap-sink-sqlite", f"{release}-callmap-sink-jsonl"}
    assert not (await apps.list_namespaced_deployment(namespace)).items
