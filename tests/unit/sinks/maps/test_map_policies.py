"""Policies and intents: complete for the workloads they cover, valid for their schemas.

(Server-side validation against a real API server is in
tests/integration/kube/test_export_validation.py.)
"""

from __future__ import annotations

import jsonschema
import pytest
import yaml
from helpers.sinkcorpus import GOLDEN

from callmap.errors import ConfigError
from callmap.wire import Edge, Endpoint, ServiceIdentity, ServicePort
from sinks.maps.filters import MapFilter
from sinks.maps.formats.cilium import cilium_policies
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.policy import PortMap

CRD = GOLDEN / "otterize-clientintents-v2beta1-crd.yaml"


def workload(namespace: str, name: str, service: str | None = None) -> Endpoint:
    return Endpoint(
        type="workload", namespace=namespace, name=name, kind="Deployment", service=service
    )


def call(
    client: Endpoint,
    server: Endpoint,
    ports: tuple[int, ...] = (80,),
    cluster: str = "c",
    udp_ports: tuple[int, ...] = (),
) -> Edge:
    return Edge(
        edge_id=f"{client.name}->{server.name or server.dns_name}",
        event="refresh",
        cluster=cluster,
        client=client,
        server=server,
        ports=ports,
        udp_ports=udp_ports,
        first_seen=1.0,
        last_seen=2.0,
    )


def test_client_intents_satisfy_the_crd_schema(corpus) -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    documents = client_intents(corpus.edges).documents
    assert documents
    for document in documents:
        jsonschema.validate(document, schema)
        assert document["apiVersion"] == "k8s.otterize.com/v2beta1"


def test_a_server_policy_holds_every_client_even_those_outside_the_filter() -> None:
    api = workload("shop", "api")
    edges = [call(workload("shop", "web"), api), call(workload("ops", "probe"), api, (9090,))]
    selection = MapFilter(clients=frozenset({"web"}))
    (policy,) = network_policies(edges, LabelBook(), selection).documents
    sources = [rule["from"][0]["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"]]
    # its own namespace first, then the others
    assert sources == [{"app.kubernetes.io/name": "web"}, {"app.kubernetes.io/name": "probe"}]


def test_same_namespace_clients_need_no_namespace_selector() -> None:
    (policy,) = network_policies(
        [call(workload("a", "x"), workload("a", "y"))], LabelBook()
    ).documents
    assert policy["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "x"}}}
    ]


def test_an_edge_seen_without_ports_allows_every_port_from_that_client() -> None:
    (policy,) = network_policies(
        [call(workload("a", "x"), workload("a", "y"), ())], LabelBook()
    ).documents
    assert "ports" not in policy["spec"]["ingress"][0]


def test_a_policy_that_would_deny_an_observed_client_is_not_written() -> None:
    api = workload("shop", "api")
    edges = [call(workload("shop", "web"), api), call(workload("shop", "bad name"), api)]
    export = network_policies(edges, LabelBook())
    assert export.documents == []
    assert any("would deny" in warning for warning in export.warnings)


def test_service_ports_become_the_pods_target_ports() -> None:
    service = ServiceIdentity(
        cluster="c",
        namespace="a",
        name="svc",
        type="ClusterIP",
        ports=(ServicePort(port=80, target_port=8080), ServicePort(port=81, target_port="metrics")),
    )
    edge = call(workload("a", "x"), workload("a", "y", service="svc"), (80, 81, 82))
    assert PortMap([service]).ports(edge) == [82, 8080, "metrics"]


def test_service_ports_map_per_protocol() -> None:
    # a service's UDP port maps to its UDP target; the TCP port of the same number
    # maps to its own target, never the UDP one
    service = ServiceIdentity(
        cluster="c",
        namespace="a",
        name="dns",
        type="ClusterIP",
        ports=(
            ServicePort(port=53, protocol="UDP", target_port=5353),
            ServicePort(port=53, protocol="TCP", target_port=5354),
        ),
    )
    edge = call(workload("a", "x"), workload("a", "y", service="dns"), (53,), udp_ports=(53,))
    assert PortMap([service]).ports(edge) == [5354]
    assert PortMap([service]).ports(edge, "UDP") == [5353]


def test_a_udp_only_client_is_allowed_its_udp_ports_not_every_port() -> None:
    api = workload("shop", "api")
    edges = [call(workload("shop", "web"), api, (), udp_ports=(53, 5353))]
    (policy,) = network_policies(edges, LabelBook()).documents
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "UDP", "port": 5353}],
        }
    ]


def test_tcp_and_udp_ports_of_one_client_merge_tcp_first() -> None:
    api, web = workload("shop", "api"), workload("shop", "web")
    edges = [
        call(web, api, (8080,), udp_ports=(53,)),
        call(web, workload("shop", "api", service="api"), (443,), udp_ports=(8125,)),
    ]
    (policy,) = network_policies(edges, LabelBook()).documents
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [
        {"protocol": "TCP", "port": 443},
        {"protocol": "TCP", "port": 8080},
        {"protocol": "UDP", "port": 53},
        {"protocol": "UDP", "port": 8125},
    ]


def test_a_dns_only_edge_still_opens_every_port_beside_a_udp_one() -> None:
    api, web = workload("shop", "api"), workload("shop", "web")
    edges = [call(web, api, (), udp_ports=(53,)), call(web, api, ())]
    (policy,) = network_policies(edges, LabelBook()).documents
    assert "ports" not in policy["spec"]["ingress"][0]


def test_cilium_lists_udp_ports_with_their_protocol() -> None:
    x, y, z = workload("a", "x"), workload("a", "y"), workload("a", "z")
    edges = [call(x, y, (), udp_ports=(53,)), call(x, z, (80,), udp_ports=(53, 161))]
    (policy_x, policy_y, policy_z) = cilium_policies(edges, LabelBook()).documents
    to_y, to_z, _dns = policy_x["spec"]["egress"]
    assert to_y["toPorts"] == [{"ports": [{"port": "53", "protocol": "UDP"}]}]
    assert to_z["toPorts"] == [
        {
            "ports": [
                {"port": "80", "protocol": "TCP"},
                {"port": "53", "protocol": "UDP"},
                {"port": "161", "protocol": "UDP"},
            ]
        }
    ]
    (from_x,) = policy_y["spec"]["ingress"]
    assert from_x["toPorts"] == [{"ports": [{"port": "53", "protocol": "UDP"}]}]
    assert policy_z["spec"]["ingress"][0]["toPorts"] == to_z["toPorts"]


def test_egress_policies_keep_dns_open() -> None:
    edges = [call(workload("a", "x"), workload("b", "y"))]
    export = network_policies(edges, LabelBook(), options=NetpolOptions(egress=True))
    egress = next(d for d in export.documents if d["spec"]["policyTypes"] == ["Egress"])
    dns = egress["spec"]["egress"][-1]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}


def test_cilium_names_externals_by_dns_name() -> None:
    edges = [
        call(workload("a", "x"), Endpoint(type="external", dns_name="api.example.com"), (443,))
    ]
    (policy,) = cilium_policies(edges, LabelBook()).documents
    fqdn, dns = policy["spec"]["egress"]
    assert fqdn == {
        "toFQDNs": [{"matchName": "api.example.com"}],
        "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
    }
    assert dns["toPorts"][0]["rules"] == {"dns": [{"matchPattern": "*"}]}
    assert "ingress" not in policy["spec"]


def test_policies_are_per_cluster() -> None:
    edges = [call(workload("a", "x"), workload("a", "y"), cluster=name) for name in ("c1", "c2")]
    with pytest.raises(ConfigError, match="--cluster"):
        network_policies(edges, LabelBook())
