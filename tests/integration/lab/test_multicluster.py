"""End to end over several clusters: `callmap lab run lab/topologies/clusters.yaml`.

Three clusters, each a netns lab with its own Kafka broker and pipeline
(capture, watcher, stream worker), mirrored by real MirrorMaker 2 into a hub
broker where `callmap aggregate` makes the global map. East and west are
peered; north has east's very addresses and peers with no one; `shop/api`
is exported by east and west; west's mirror stops for a minute while its
calls go on; north's only client is deleted half a minute in. The run
passes only on a perfect global map against both truths (the plans', and
every caller's own log of who answered), with no edge announced `new` twice
and none expired while called.
"""

from __future__ import annotations

import pytest
from helpers.labfixtures import skip_without_root
from helpers.labruns import lab_run

from callmap.config import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.netns, pytest.mark.e2e, pytest.mark.timeout(900)]


def test_the_global_map_names_calls_across_clusters_and_rides_out_a_stopped_mirror(
    settings: Settings,
) -> None:
    skip_without_root()
    report = lab_run(settings, "clusters", timeout=700)
    observed = {(e["client"], e["server"]) for e in report["observed"]}
    # Cross-cluster calls are named on both sides: a peer's pod IP, and a clusterset
    # name that reaches the exporting clusters' workloads in both clusters.
    assert ("east/shop/cart", "west/billing/ledger") in observed
    assert ("east/shop/frontend", "east/shop/api") in observed
    assert ("east/shop/frontend", "west/shop/api") in observed
    # North holds east's addresses but is nobody's peer: no call of east or west lands there.
    assert all(
        client.startswith("north/") for client, server in observed if server.startswith("north/")
    )
    assert report["clusters"] == ["east", "west", "north"]
    assert [line.split(":")[0] for line in report["mirror_stops"]] == ["west", "west"]
    assert report["new_again"] == []
    # North's frontend was deleted: its edge expired at the hub once its calls stopped.
    expired = {(e["client"], e["server"]) for e in report["lifecycle"]["expired"]}
    assert ("north/shop/frontend", "north/shop/api") in expired
