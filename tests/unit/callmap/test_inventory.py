"""The inventory file: the records' shape, forgiving defaults, strict about typos."""

from __future__ import annotations

import msgspec
import pytest

from callmap.inventory import (
    InventoryError,
    InventoryNode,
    InventoryPod,
    InventoryService,
    dump_inventory,
    inventory_records,
    load_inventory,
    pod_uid,
)
from callmap.wire import (
    NodeIdentity,
    PodIdentity,
    ServiceIdentity,
    ServicePort,
    ServiceWorkload,
    WorkloadRef,
)

EXAMPLE = """
cluster: lab
pods:
  - uid: 6d0c1f7e-2b1c-4f9e-9a43-3f9b3e1b8a11
    namespace: shop
    name: frontend-7d9f-abcde
    ips: [10.1.0.10, "fd00::a"]
    node: node-a
    workload: {kind: Deployment, name: frontend}
    labels: {app: frontend}
    created: 2024-05-01T12:00:00Z
    ips_since: "2024-05-01T12:00:04Z"
  - namespace: shop
    name: debug
  - namespace: shop
    name: db-0
    hostname: db-0
    subdomain: db
services:
  - namespace: shop
    name: cartservice
    cluster_ips: [10.96.4.2]
    ports:
      - {port: 7070, name: grpc, target_port: grpc}
    workloads:
      - {namespace: shop, kind: Deployment, name: cartservice}
    created: 2024-05-01T11:00:00Z
    workloads_since: 1714564900
  - namespace: shop
    name: stripe
    type: ExternalName
    external_name: api.stripe.com
nodes:
  - name: node-a
    ips: [192.168.5.10]
"""


def test_the_example_becomes_records_stamped_with_the_cluster() -> None:
    records = inventory_records(load_inventory(EXAMPLE), "lab")
    frontend, debug, db = records.pods
    assert frontend == PodIdentity(
        cluster="lab",
        uid="6d0c1f7e-2b1c-4f9e-9a43-3f9b3e1b8a11",
        namespace="shop",
        name="frontend-7d9f-abcde",
        ips=("10.1.0.10", "fd00::a"),
        node="node-a",
        workload=WorkloadRef(kind="Deployment", name="frontend"),
        labels={"app": "frontend"},
        created=1714564800.0,
        ips_since=1714564804.0,
    )
    assert (db.hostname, db.subdomain) == ("db-0", "db")  # its name under a headless service
    assert debug.workload == WorkloadRef(kind="Pod", name="debug")  # a bare pod
    assert debug.uid == pod_uid("lab", "shop", "debug")  # stable across loads
    cart, stripe = records.services
    assert cart == ServiceIdentity(
        cluster="lab",
        namespace="shop",
        name="cartservice",
        type="ClusterIP",
        cluster_ips=("10.96.4.2",),
        ports=(ServicePort(port=7070, name="grpc", target_port="grpc"),),
        workloads=(ServiceWorkload(namespace="shop", kind="Deployment", name="cartservice"),),
        created=1714561200.0,
        workloads_since=1714564900.0,
    )
    assert (stripe.type, stripe.external_name) == ("ExternalName", "api.stripe.com")
    assert records.nodes == (NodeIdentity(cluster="lab", name="node-a", ips=("192.168.5.10",)),)


def test_json_is_an_inventory_too() -> None:
    text = '{"pods": [{"namespace": "a", "name": "p", "ips": ["10.0.0.1"], "created": 5}]}'
    (pod,) = inventory_records(load_inventory(text), "c").pods
    assert (pod.ips, pod.created) == (("10.0.0.1",), 5.0)


def test_an_empty_file_is_an_empty_inventory() -> None:
    inventory = load_inventory("")
    assert (inventory.pods, inventory.services, inventory.nodes) == ((), (), ())


def by_uid(pod: PodIdentity) -> str:
    return pod.uid


def test_dumping_and_loading_gives_the_same_records() -> None:
    records = inventory_records(load_inventory(EXAMPLE), "lab")
    text = dump_inventory("lab", records.pods, records.services, records.nodes)
    again = inventory_records(load_inventory(text), "lab")
    assert sorted(again.pods, key=by_uid) == sorted(records.pods, key=by_uid)
    assert (again.services, again.nodes) == (records.services, records.nodes)
    assert "host_network" not in text and "v:" not in text  # defaults and versions left out


def test_a_dump_keeps_the_clusters_id() -> None:
    text = dump_inventory("lab", (), (), (), cluster_uid="6f1c-kube-system")
    assert load_inventory(text).cluster_uid == "6f1c-kube-system"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pods: [{namespace: a, name: b, ip: [10.0.0.1]}]", "unknown field `ip` - at `pods[0]`"),
        ("pods: [{namespace: a}]", "missing required field `name` - at `pods[0]`"),
        ("pods: [{namespace: a, name: b, ips: [10.0.0.300]}]", "pods[0].ips[0]: not an IP"),
        ("services: [{namespace: a, name: b, type: Sideways}]", "at `services[0].type`"),
        ("nodes: [{name: n, ips: 10.0.0.1}]", "at `nodes[0].ips`"),
        ("pods: [{namespace: a, name: b, created: yesterday}]", "at `pods[0].created`"),
        ("- just a list", "expected a mapping"),
        ("pods: [", "not YAML or JSON"),
        ("nodes: [{name: n}, {name: n}]", "nodes[1]: 'n' appears twice"),
    ],
)
def test_mistakes_name_the_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as raised:
        inventory_records(load_inventory(text), "c")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("entry", "record"),
    [
        (InventoryPod, PodIdentity),
        (InventoryService, ServiceIdentity),
        (InventoryNode, NodeIdentity),
    ],
)
def test_entries_have_the_fields_of_their_records_without_v_and_cluster(
    entry: type, record: type
) -> None:
    record_fields = {f.name for f in msgspec.structs.fields(record)}
    assert {f.name for f in msgspec.structs.fields(entry)} == record_fields - {"v", "cluster"}
