"""``callmap watch --dump-inventory``: a cluster's identities, listed once, as an inventory file.

For people who want to run callmap without cluster access later (or to see
what the watcher would publish): every node, pod, EndpointSlice and service
is listed once, exactly as the watcher would (owners resolved, labels
bounded, services marked exported where the MCS API's ServiceExports are
served), with the cluster's id (its kube-system namespace's UID), and the
records are written in the inventory format of docs/watch.md. Nothing goes to
Kafka and no Lease is taken.
"""

from __future__ import annotations

import time

from callmap.backoff import retrying
from callmap.counters import Counters
from callmap.inventory import dump_inventory
from watch.catalog import Catalog
from watch.handlers import PodHandler, identity_handlers
from watch.identitytable import Change, IdentityTables
from watch.kubeclient import (
    SERVICE_EXPORT,
    KubeApi,
    api_client,
)
from watch.options import KubeSource, LabelPolicy, WatchTimeouts
from watch.ownercache import OwnerResolver, api_fetch
from watch.reflector import Reflector


def _ignore(change: Change) -> None:
    """The tables' output: nothing is published, the tables themselves are the result."""


async def dump_cluster(
    source: KubeSource,
    cluster: str,
    *,
    labels: LabelPolicy | None = None,
    timeouts: WatchTimeouts | None = None,
    counters: Counters | None = None,
) -> str:
    """The inventory document (YAML) of the cluster ``source`` points at."""
    timeouts = timeouts or WatchTimeouts()
    counters = counters or Counters()
    tables = IdentityTables(retention=0.0, emit=_ignore)
    catalog = Catalog(cluster, tables)
    clock = time.time
    async with api_client(source) as client:
        api = KubeApi(client, timeouts.request_timeout)
        resolver = OwnerResolver(api_fetch(api), counters.stage("owners"))
        cluster_uid = await retrying(api.cluster_uid, "read the cluster's id")
        exports = await retrying(lambda: api.serves(SERVICE_EXPORT), "discover the MCS API")
        pods = PodHandler(catalog, resolver, labels or LabelPolicy(), counters.stage("pods"), clock)
        for resource, handler in identity_handlers(catalog, pods, counters, clock, exports):
            reflector = Reflector(api, resource, handler, timeouts)
            await retrying(reflector.list_all, f"list {resource.plural}")
    return dump_inventory(
        cluster,
        (record for _, record in tables.pods.items()),
        (record for _, record in tables.services.items()),
        (record for _, record in tables.nodes.items()),
        cluster_uid=cluster_uid,
    )
