"""Exported NetworkPolicies and ClientIntents pass a real API server's validation.

Every object ``callmap export`` writes from the map corpus (hostile names
included) is created with ``dryRun=All`` and strict field validation, so an
unknown field, a bad label or an invalid name is an error, as it would be for
``kubectl apply``. ClientIntents are checked against Otterize's v2beta1 CRD
(a faithful minimal copy in tests/golden/sinks), registered first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import yaml
from helpers.sinkcorpus import GOLDEN, load_jsonl
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from callmap.wire import Edge, PodIdentity, ServiceIdentity
from devtools.kube import KubeStatus
from sinks.maps.filters import MapFilter
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.policy import PortMap

pytestmark = pytest.mark.kube

STRICT = {"dry_run": "All", "field_validation": "Strict"}


@pytest.fixture
async def api(kube_api: KubeStatus) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube_api.kubeconfig), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        for name in ("shop", "finance"):
            try:
                await core.create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
                )
            except ApiException as error:
                if error.status != 409:
                    raise
        yield api


@pytest.fixture
async def intents_crd(api: client.ApiClient) -> None:
    crd = yaml.safe_load((GOLDEN / "otterize-clientintents-v2beta1-crd.yaml").read_text())
    extensions = client.ApiextensionsV1Api(api)
    try:
        await extensions.create_custom_resource_definition(crd)
    except ApiException as error:
        if error.status != 409:
            raise
    for _ in range(100):
        current = await extensions.read_custom_resource_definition(crd["metadata"]["name"])
        conditions = {c.type: c.status for c in current.status.conditions or []}
        if conditions.get("Established") == "True":
            return
        await asyncio.sleep(0.1)
    pytest.fail("the ClientIntents CRD never became established")


async def test_exported_networkpolicies_are_accepted(api: client.ApiClient) -> None:
    export = network_policies(
        load_jsonl("edges", Edge),
        LabelBook.from_pods(load_jsonl("pods", PodIdentity)),
        options=NetpolOptions(egress=True),
        ports=PortMap(load_jsonl("services", ServiceIdentity)),
    )
    assert len(export.documents) >= 8
    networking = client.NetworkingV1Api(api)
    for document in export.documents:
        namespace = document["metadata"]["namespace"]
        created = await networking.create_namespaced_network_policy(namespace, document, **STRICT)
        sent = document["spec"]
        assert created.spec.pod_selector.match_labels == sent["podSelector"]["matchLabels"]
        assert created.spec.policy_types == sent["policyTypes"]
        rules = created.spec.ingress or created.spec.egress
        assert len(rules) == len(sent.get("ingress") or sent.get("egress"))


async def test_exported_client_intents_are_accepted(
    api: client.ApiClient, intents_crd: None
) -> None:
    documents = client_intents(load_jsonl("edges", Edge)).documents
    assert documents
    custom = client.CustomObjectsApi(api)
    for document in documents:
        created = await custom.create_namespaced_custom_object(
            "k8s.otterize.com", "v2beta1", document["metadata"]["namespace"], "clientintents",
            document, **STRICT,
        )  # fmt: skip
        assert created["spec"] == document["spec"]  # nothing pruned, nothing added


async def test_one_clusters_exports_from_global_edges_are_accepted(
    api: client.ApiClient, intents_crd: None
) -> None:
    edges = load_jsonl("global-edges", Edge)
    east = MapFilter(clusters=frozenset({"east"}))
    labels = LabelBook.from_pods(load_jsonl("global-pods", PodIdentity))
    policies = network_policies(edges, labels, east, NetpolOptions(egress=True)).documents
    intents = client_intents(edges, east).documents
    assert policies and len(intents) == 2
    networking = client.NetworkingV1Api(api)
    for document in policies:
        namespace = document["metadata"]["namespace"]
        await networking.create_namespaced_network_policy(namespace, document, **STRICT)
    custom = client.CustomObjectsApi(api)
    for document in intents:
        created = await custom.create_namespaced_custom_object(
            "k8s.otterize.com", "v2beta1", document["metadata"]["namespace"], "clientintents",
            document, **STRICT,
        )  # fmt: skip
        assert created["spec"] == document["spec"]


async def test_the_crd_does_reject_an_invalid_client_intents(
    api: client.ApiClient, intents_crd: None
) -> None:
    bad = {
        "apiVersion": "k8s.otterize.com/v2beta1",
        "kind": "ClientIntents",
        "metadata": {"name": "bad", "namespace": "shop"},
        "spec": {"targets": [{"kubernetes": {"kind": "Deployment"}}]},  # no workload, no name
    }
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as error:
        await custom.create_namespaced_custom_object(
            "k8s.otterize.com", "v2beta1", "shop", "clientintents", bad, **STRICT
        )
    assert error.value.status == 422
