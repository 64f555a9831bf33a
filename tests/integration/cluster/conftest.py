"""A real Kubernetes cluster for the tests that need kubelets, containerd, CoreDNS and kube-proxy.

``dev_cluster`` starts :class:`devcluster.cluster.DevCluster` (two nodes) in
pytest's temporary directory once per session, so every run starts from an empty
cluster, and stops it at the end; stopping must leave no namespace, link,
cgroup or process behind, or the session ends with an error. Its binaries and
images come from the cache (``callmap dev cluster fetch`` builds them); a cold
machine builds them in the first test that needs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import cgroups, network
from devcluster.cluster import DevCluster
from devcluster.network import NETNS_DIR

pytestmark = pytest.mark.cluster
NAME = "test"


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    cluster = DevCluster(tmp_path_factory.mktemp("cluster"), NAME, node_count=2)
    # A run that was killed leaves its namespaces (nothing runs in them any more): ours by name.
    network.remove_network(cluster.layout)
    for node in cluster.layout.nodes:
        cgroups.remove_root(f"/callmap/{NAME}/{node.name}")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        assert_nothing_left(cluster)


def assert_nothing_left(cluster: DevCluster) -> None:
    layout = cluster.layout
    namespaces = [p.name for p in NETNS_DIR.glob(f"callmap-{NAME}-*")] if NETNS_DIR.exists() else []
    assert namespaces == [], f"network namespaces left: {namespaces}"
    assert not Path(f"/sys/class/net/{layout.host_interface}").exists()
    for node in layout.nodes:
        assert not cgroups.exists(f"/callmap/{NAME}/{node.name}"), f"cgroups of {node.name} left"
    directory = str(cluster.directory).encode()
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if directory in cmdline.read_bytes():
                left.append(cmdline.parent.name)
        except OSError:
            continue
    assert left == [], f"processes of the cluster left: {left}"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(cluster.directory) not in mounts
