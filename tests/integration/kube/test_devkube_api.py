"""The development API server is a real one: objects, the status subresource, watches, RBAC.

Nothing runs but the API server, so the tests play the other parts: they write
a pod's status as a kubelet would, and no controller turns the Deployment into
a ReplicaSet.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest
from click.testing import CliRunner
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.rest import ApiException

from devtools.kube import DevKube, KubeStatus
from devtools.kubecli import kube
from devtools.process import free_port

pytestmark = pytest.mark.kube

POD_IP = "10.1.0.10"


@pytest.fixture
async def namespace(admin: client.ApiClient) -> str:
    # Left behind: without a namespace controller a deleted namespace never goes away,
    # and the server is thrown away at the end of the session anyway.
    name = f"test-{uuid.uuid4().hex[:8]}"
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    await client.CoreV1Api(admin).create_namespace(body)
    return name


def _pod(name: str, labels: dict[str, str]) -> client.V1Pod:
    container = client.V1Container(name="app", image="registry.example/app:1")
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[container], node_name="node-a"),
    )


async def test_a_kubelet_style_status_update_is_read_back(
    admin: client.ApiClient, namespace: str
) -> None:
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=_pod("x", labels).spec
            ),
        ),
    )
    created = await client.AppsV1Api(admin).create_namespaced_deployment(namespace, deployment)
    assert created.metadata.uid and created.spec.replicas == 1  # defaulted by the server

    core = client.CoreV1Api(admin)
    await core.create_namespaced_pod(namespace, _pod("web-1", labels))
    status = {"status": {"phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}]}}
    await core.patch_namespaced_pod_status("web-1", namespace, status)

    pod = await core.read_namespaced_pod("web-1", namespace)
    assert pod.status.pod_ip == POD_IP
    assert [entry.ip for entry in pod.status.pod_ips] == [POD_IP]
    assert pod.status.phase == "Running" and pod.spec.node_name == "node-a"


async def test_a_watch_from_a_list_sees_the_pod_added(
    admin: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(admin)
    listed = await core.list_namespaced_pod(namespace)
    await core.create_namespaced_pod(namespace, _pod("late", {"app": "late"}))

    events = watch.Watch().stream(
        core.list_namespaced_pod,
        namespace,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=20,
    )
    async with events:
        async for event in events:
            if event["object"].metadata.name == "late":
                assert event["type"] == "ADDED"
                break
        else:
            pytest.fail("the watch ended without the ADDED event of pod late")


async def test_rbac_is_enforced_for_a_service_account_token(
    kube_api: KubeStatus, admin: client.ApiClient, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    await core.create_namespaced_service_account(namespace, account)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    issued = await core.create_namespaced_service_account_token("reader", namespace, request)

    configuration = client.Configuration(host=kube_api.server)
    configuration.ssl_ca_cert = str(kube_api.ca_file)
    configuration.api_key = {"BearerToken": issued.status.token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    async with client.ApiClient(configuration) as as_reader:
        reader = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as refused:
            await reader.list_namespaced_pod(namespace)
        assert refused.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in str(refused.value.body)

        role = client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
        )
        await rbac.create_namespaced_role(namespace, role)
        binding = client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-reads-pods"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        )
        await rbac.create_namespaced_role_binding(namespace, binding)

        # The authorizer reads roles from an informer: allow it a moment to see the new ones.
        for _ in range(50):
            try:
                listed = await reader.list_namespaced_pod(namespace)
                break
            except ApiException as error:
                assert error.status == 403
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the RoleBinding never took effect")
        assert listed.items == []


def test_the_cli_starts_reports_and_stops_a_named_server(kube_api: KubeStatus) -> None:
    # kube_api only makes sure the binaries exist (or skips); this is a server of its own.
    name, port = f"test-{uuid.uuid4().hex[:8]}", str(free_port())
    common = ["--name", name, "--port", port]
    runner = CliRunner()
    try:
        started = runner.invoke(kube, ["start", *common])
        assert started.exit_code == 0, started.output
        assert f"started: https://127.0.0.1:{port}" in started.output
        kubeconfig = DevKube.named(name).kubeconfig
        assert f"export KUBECONFIG={kubeconfig}\n" in started.output and kubeconfig.exists()

        again = runner.invoke(kube, ["start", *common])
        assert again.exit_code == 0 and "already running" in again.output

        status = runner.invoke(kube, ["status", *common])
        assert status.exit_code == 0 and "running" in status.output
    finally:
        stopped = runner.invoke(kube, ["stop", *common])
    assert stopped.exit_code == 0 and "API server stopped" in stopped.output

    after = runner.invoke(kube, ["status", *common])
    assert after.exit_code == 1 and "not started" in after.output
    assert "was not running" in runner.invoke(kube, ["stop", *common]).output
    shutil.rmtree(DevKube.named(name).directory)
