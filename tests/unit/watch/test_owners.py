"""A pod's workload is its owner chain followed to the root, with owners fetched lazily."""

from __future__ import annotations

from callmap.counters import StageCounters
from callmap.wire import WorkloadRef
from watch.objects import OwnerRef, SlimOwner
from watch.ownercache import OwnerResolver
from watch.owners import Missing, OwnerCache, PodLink, Resolved, resolve

RS = OwnerRef(group="apps", kind="ReplicaSet", name="web-7d9f", uid="rs-1")
DEPLOYMENT = OwnerRef(group="apps", kind="Deployment", name="web", uid="d-1")
JOB = OwnerRef(group="batch", kind="Job", name="report-28711", uid="job-1")
CRONJOB = OwnerRef(group="batch", kind="CronJob", name="report", uid="cj-1")


def link(owner: OwnerRef | None, name: str = "web-7d9f-abcde", override: str | None = None):  # type: ignore[no-untyped-def]
    return PodLink("shop", name, owner, override)


def cached(*owners: tuple[OwnerRef, OwnerRef | None]) -> OwnerCache:
    cache = OwnerCache()
    for ref, parent in owners:
        cache.put(SlimOwner(uid=ref.uid, kind=ref.kind, name=ref.name, owner=parent))
    return cache


def test_a_bare_pod_is_its_own_workload() -> None:
    assert resolve(link(None, "debug"), OwnerCache()) == Resolved(
        WorkloadRef(kind="Pod", name="debug")
    )


def test_a_static_pod_owned_by_its_node_is_its_own_workload() -> None:
    node = OwnerRef(group="", kind="Node", name="node-a", uid="n-1")
    result = resolve(link(node, "kube-proxy-node-a"), OwnerCache())
    assert result == Resolved(WorkloadRef(kind="Pod", name="kube-proxy-node-a"))


def test_pod_replicaset_deployment() -> None:
    cache = cached((RS, DEPLOYMENT), (DEPLOYMENT, None))
    assert resolve(link(RS), cache) == Resolved(WorkloadRef(kind="Deployment", name="web"))


def test_pod_job_cronjob() -> None:
    cache = cached((JOB, CRONJOB), (CRONJOB, None))
    assert resolve(link(JOB), cache) == Resolved(WorkloadRef(kind="CronJob", name="report"))


def test_a_job_of_its_own_is_the_workload() -> None:
    assert resolve(link(JOB), cached((JOB, None))).workload == WorkloadRef(
        kind="Job", name=JOB.name
    )


def test_statefulsets_and_daemonsets_are_roots() -> None:
    for kind in ("StatefulSet", "DaemonSet"):
        ref = OwnerRef(group="apps", kind=kind, name="db", uid=f"{kind}-1")
        assert resolve(link(ref), cached((ref, None))).workload == WorkloadRef(kind=kind, name="db")


def test_a_custom_owner_is_the_workload_by_kind_and_name_and_is_noted() -> None:
    rollout = OwnerRef(group="argoproj.io", kind="Rollout", name="web", uid="ro-1")
    assert resolve(link(rollout), OwnerCache()) == Resolved(
        WorkloadRef(kind="Rollout", name="web"), "custom_kind"
    )
    # ... also above a built-in controller (an operator that owns a Deployment):
    cache = cached((RS, DEPLOYMENT), (DEPLOYMENT, rollout))
    assert resolve(link(RS), cache).workload == WorkloadRef(kind="Rollout", name="web")


def test_an_uncached_owner_is_asked_for_one_at_a_time() -> None:
    cache = OwnerCache()
    assert resolve(link(RS), cache) == Missing(RS, "shop")
    cache.put(SlimOwner(uid=RS.uid, kind=RS.kind, name=RS.name, owner=DEPLOYMENT))
    assert resolve(link(RS), cache) == Missing(DEPLOYMENT, "shop")


def test_an_owner_that_is_gone_is_the_workload() -> None:
    cache = OwnerCache()
    cache.mark_gone(RS.uid)
    assert resolve(link(RS), cache) == Resolved(
        WorkloadRef(kind="ReplicaSet", name="web-7d9f"), "owner_gone"
    )


def test_the_annotation_overrides_the_name_not_the_kind() -> None:
    cache = cached((RS, DEPLOYMENT), (DEPLOYMENT, None))
    assert resolve(link(RS, override="storefront"), cache).workload == WorkloadRef(
        kind="Deployment", name="storefront"
    )
    assert resolve(link(None, "debug", "toolbox"), cache).workload == WorkloadRef(
        kind="Pod", name="toolbox"
    )


def test_an_ownership_cycle_ends() -> None:
    a = OwnerRef(group="apps", kind="Deployment", name="a", uid="a")
    b = OwnerRef(group="apps", kind="Deployment", name="b", uid="b")
    result = resolve(link(a), cached((a, b), (b, a)))
    assert isinstance(result, Resolved) and result.note == "too_deep"


def test_refresh_updates_only_cached_owners_and_says_when_the_chain_changed() -> None:
    cache = cached((RS, DEPLOYMENT))
    other = OwnerRef(group="apps", kind="Deployment", name="web-v2", uid="d-2")
    stranger = SlimOwner(uid="rs-9", kind="ReplicaSet", name="x", owner=None)
    assert cache.refresh(stranger) is False and "rs-9" not in cache
    same = SlimOwner(uid=RS.uid, kind=RS.kind, name=RS.name, owner=DEPLOYMENT)
    assert cache.refresh(same) is False
    adopted = SlimOwner(uid=RS.uid, kind=RS.kind, name=RS.name, owner=other)
    assert cache.refresh(adopted) is True and cache.lookup(RS.uid) == adopted


async def test_the_resolver_fetches_each_owner_once_and_counts_what_it_did() -> None:
    owners = {
        RS.uid: SlimOwner(uid=RS.uid, kind=RS.kind, name=RS.name, owner=DEPLOYMENT),
        DEPLOYMENT.uid: SlimOwner(uid=DEPLOYMENT.uid, kind="Deployment", name="web", owner=None),
    }
    fetched: list[str] = []

    async def fetch(ref: OwnerRef, namespace: str) -> SlimOwner | None:
        fetched.append(f"{namespace}/{ref.kind}/{ref.name}")
        return owners.get(ref.uid)

    counters = StageCounters()
    resolver = OwnerResolver(fetch, counters)
    for n in range(3):
        workload = await resolver.workload(link(RS, f"web-7d9f-{n}"))
        assert workload == WorkloadRef(kind="Deployment", name="web")
    assert fetched == ["shop/ReplicaSet/web-7d9f", "shop/Deployment/web"]
    assert (counters.seen, counters.emitted) == (2, 2)


async def test_a_namesake_with_another_uid_is_not_the_owner() -> None:
    async def fetch(ref: OwnerRef, namespace: str) -> SlimOwner | None:
        return SlimOwner(uid="rs-new", kind=ref.kind, name=ref.name, owner=DEPLOYMENT)

    counters = StageCounters()
    workload = await OwnerResolver(fetch, counters).workload(link(RS))
    assert workload == WorkloadRef(kind="ReplicaSet", name="web-7d9f")
    assert counters.dropped == {"owner_gone": 1}
