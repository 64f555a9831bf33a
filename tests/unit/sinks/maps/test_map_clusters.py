"""A map of two clusters, from hand-written global edges (tests/helpers/sinkcorpus.py).

What each output must say is written out here from the corpus's story, not
derived by the code under test; the golden files hold the whole outputs.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from helpers.sinkcorpus import Corpus, load_global_corpus

from sinks.escape import terminal
from sinks.maps.filters import MapFilter
from sinks.maps.formats.cilium import cilium_policies
from sinks.maps.formats.documents import to_yaml
from sinks.maps.formats.dot import render_dot
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.listing import render_json, render_text
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.tabular import edges_csv

EAST = MapFilter(clusters=frozenset({"east"}))
WEST = MapFilter(clusters=frozenset({"west"}))


@pytest.fixture(scope="module")
def world() -> Corpus:
    return load_global_corpus()


def warnings_text(warnings: list[str]) -> str:
    return "".join(terminal(w) + "\n" for w in warnings)


def test_the_list_names_every_cluster(world, golden) -> None:
    text = render_text(world.edges)
    golden.check("clusters-list.txt", text)
    assert text == (
        "cart in namespace shop (cluster east) calls:\n"
        "  - 10.1.2.3 (unresolved IP) (cluster east)\n"
        "frontend in namespace shop (cluster east) calls:\n"
        "  - cart (cluster east)\n"
        "  - api in namespace shop (cluster west)\n"
        "  - ledger in namespace shop (cluster west)\n"
        "  - api.stripe.com (external)\n"
        "reporter in namespace ops (cluster west) calls:\n"
        "  - cart in namespace shop (cluster east)\n"
        "api in namespace shop (cluster west) calls:\n"
        "  - db (cluster west)\n"
    )


def test_one_clusters_map_holds_the_calls_into_it_and_out_of_it(world) -> None:
    west = {edge.edge_id for edge in WEST.select(world.edges)}
    assert west == {"g02", "g03", "g06", "g07"}  # east's calls into west, west's own and out
    east = {edge.edge_id for edge in EAST.select(world.edges)}
    assert east == {"g01", "g02", "g03", "g04", "g05", "g07"}


def test_a_map_of_one_cluster_names_none(world) -> None:
    only_west = [edge for edge in world.edges if edge.edge_id == "g06"]
    assert render_text(only_west) == "api in namespace shop calls:\n  - db\n"


def test_list_json_carries_each_sides_cluster(world, golden) -> None:
    output = render_json(world.edges)
    golden.check("clusters-list.json", output)
    clients = json.loads(output)
    reporter = next(c for c in clients if c["client"]["name"] == "reporter")
    assert reporter["cluster"] == "west" and reporter["client"]["cluster"] == "west"
    (call,) = reporter["calls"]
    assert call["server"]["cluster"] == "east"
    assert call["display"] == "cart in namespace shop (cluster east)"
    frontend = next(c for c in clients if c["client"]["name"] == "frontend")
    stripe = next(c for c in frontend["calls"] if c["server"]["type"] == "external")
    assert "cluster" not in stripe["server"]


def test_graphviz_boxes_each_cluster_with_its_namespaces(world, golden) -> None:
    dot = render_dot(world.edges)
    golden.check("clusters-map.dot", dot)
    lines = dot.splitlines()
    east = lines.index("  subgraph cluster_0 {")
    assert lines[east + 1].startswith('    label="cluster east";')
    assert '      label="namespace shop";' in lines[east + 2 : east + 4][0] + lines[east + 3]
    west = next(i for i, line in enumerate(lines) if line.startswith('    label="cluster west";'))
    assert west > east
    outside = next(i for i, line in enumerate(lines) if 'label="outside the clusters"' in line)
    assert lines[outside].startswith("    label=")  # a box of the graph, in no cluster's box
    assert lines[outside - 1].startswith("  subgraph cluster_")
    # the same namespace in two clusters is two boxes
    assert dot.count('label="namespace shop";') == 2


def test_cilium_for_one_cluster_selects_peers_by_cluster_label(world, golden) -> None:
    export = cilium_policies(world.edges, LabelBook.from_pods(world.pods), EAST)
    golden.check("clusters-cilium.yaml", to_yaml(export.documents))
    golden.check("clusters-cilium-warnings.txt", warnings_text(export.warnings))
    names = {d["metadata"]["name"] for d in export.documents}
    assert names == {"callmap-cart", "callmap-frontend"}  # east's workloads only
    assert all(
        d["metadata"]["annotations"]["callmap.io/cluster"] == "east" for d in export.documents
    )
    cart = next(d for d in export.documents if d["metadata"]["name"] == "callmap-cart")
    assert cart["spec"]["ingress"] == [
        {
            "fromEndpoints": [
                {"matchLabels": {"app": "frontend", "k8s:io.kubernetes.pod.namespace": "shop"}}
            ],
            "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}],
        },
        {
            "fromEndpoints": [
                {
                    "matchLabels": {
                        "app": "reporter",
                        "k8s:io.kubernetes.pod.namespace": "ops",
                        "io.cilium.k8s.policy.cluster": "west",
                    }
                }
            ],
            "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}],
        },
    ]
    frontend = next(d for d in export.documents if d["metadata"]["name"] == "callmap-frontend")
    api = frontend["spec"]["egress"][1]["toEndpoints"][0]["matchLabels"]
    # west's api, by west's pod labels (east has an api with other labels)
    assert api == {
        "app": "api",
        "tier": "backend",
        "k8s:io.kubernetes.pod.namespace": "shop",
        "io.cilium.k8s.policy.cluster": "west",
    }
    assert export.counts["cross_cluster_peers"] == 3 and not export.counts["cross_cluster_left_out"]


def test_intents_name_servers_of_other_clusters_by_clusterset_name(world, golden) -> None:
    export = client_intents(world.edges, EAST)
    golden.check("clusters-intents.yaml", to_yaml(export.documents))
    golden.check("clusters-intents-warnings.txt", warnings_text(export.warnings))
    by_name = {d["metadata"]["name"]: d["spec"] for d in export.documents}
    assert set(by_name) == {"cart", "frontend"}
    assert by_name["frontend"]["targets"] == [
        {"kubernetes": {"name": "cart", "kind": "Deployment"}},
        {"internet": {"domains": ["api.shop.svc.clusterset.local", "api.stripe.com"]}},
    ]
    # west's ledger was reached by pod address: no clusterset name to give it
    assert any("shop/StatefulSet/ledger in cluster west" in w for w in export.warnings)
    assert export.counts == {"cross_cluster_peers": 1, "cross_cluster_left_out": 1}


def test_networkpolicies_cannot_select_other_clusters_and_say_so(world, golden) -> None:
    export = network_policies(
        world.edges, LabelBook.from_pods(world.pods), EAST, NetpolOptions(egress=True)
    )
    golden.check("clusters-networkpolicy.yaml", to_yaml(export.documents))
    golden.check("clusters-networkpolicy-warnings.txt", warnings_text(export.warnings))
    names = {d["metadata"]["name"] for d in export.documents}
    # cart's ingress would deny west's reporter, frontend's egress west's api and ledger:
    # not written. cart's egress (to an address) is.
    assert names == {"callmap-cart-egress"}
    assert export.counts["cross_cluster_left_out"] == 3
    assert any("ops/CronJob/reporter in cluster west" in w for w in export.warnings)


def test_policies_want_one_cluster(world) -> None:
    with pytest.raises(Exception, match="--cluster"):
        cilium_policies(world.edges, LabelBook())
    with pytest.raises(Exception, match="one --cluster"):
        client_intents(world.edges, MapFilter(clusters=frozenset({"east", "west"})))


def test_csv_has_each_sides_cluster_with_several(world, golden) -> None:
    text = edges_csv(world.edges)
    golden.check("clusters-edges.csv", text)
    rows = {row["edge_id"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}
    assert (rows["g07"]["client_cluster"], rows["g07"]["server_cluster"]) == ("west", "east")
    assert rows["g04"]["server_cluster"] == ""
