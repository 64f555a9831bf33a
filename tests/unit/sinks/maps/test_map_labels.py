"""Pod labels for policies: shared by every live pod, never per-pod, never hostile."""

from __future__ import annotations

import msgspec

from callmap.wire import Endpoint, PodIdentity, WorkloadRef
from sinks.maps.formats.labels import LabelBook, Selector


def workload(name: str, namespace: str = "shop") -> Endpoint:
    return Endpoint(type="workload", namespace=namespace, name=name, kind="Deployment")


def pod(uid: str, labels: dict[str, str], deleted: float | None = None) -> PodIdentity:
    return PodIdentity(
        cluster="c",
        uid=uid,
        namespace="shop",
        name=uid,
        workload=WorkloadRef(kind="Deployment", name="cart"),
        labels=labels,
        deleted=deleted,
    )


def test_labels_every_live_pod_shares_without_per_pod_ones() -> None:
    book = LabelBook.from_pods(
        [
            pod("a", {"app": "cart", "tier": "web", "pod-template-hash": "1"}),
            pod("b", {"app": "cart", "tier": "api", "pod-template-hash": "2"}),
            pod("c", {"app": "old"}, deleted=5.0),
        ]
    )
    assert book.selector(workload("cart")) == Selector({"app": "cart"}, "pods")


def test_invalid_labels_are_left_out_and_empty_falls_back_to_the_convention() -> None:
    book = LabelBook.from_pods([pod("a", {"odd": "evil\nvalue", "pod-template-hash": "1"})])
    assert book.selector(workload("cart")) == Selector(
        {"app.kubernetes.io/name": "cart"}, "convention"
    )


def test_the_convention_key_is_configurable_and_names_must_be_label_values() -> None:
    book = LabelBook(convention_key="app")
    assert book.selector(workload("api")) == Selector({"app": "api"}, "convention")
    assert book.selector(workload("evil name")) is None


def test_a_labels_file_wins_over_pod_identities() -> None:
    pods = LabelBook.from_pods([pod("a", {"app": "cart"})])
    book = LabelBook.from_mapping({"shop/cart": {"team": "carts"}}).over(pods)
    assert book.selector(workload("cart")) == Selector({"team": "carts"}, "file")
    other = LabelBook.from_mapping({"shop/other": {"x": "y"}}).over(pods)
    assert other.selector(workload("cart")) == Selector({"app": "cart"}, "pods")


def test_each_cluster_has_its_own_labels_and_a_file_may_name_the_cluster() -> None:
    east = PodIdentity(
        cluster="east", uid="e", namespace="shop", name="e",
        workload=WorkloadRef(kind="Deployment", name="cart"), labels={"app": "cart-east"},
    )  # fmt: skip
    west = msgspec.structs.replace(east, cluster="west", uid="w", labels={"app": "cart-west"})
    book = LabelBook.from_pods([east, west])
    in_west = msgspec.structs.replace(workload("cart"), cluster="west")
    assert book.selector(in_west) == Selector({"app": "cart-west"}, "pods")
    # a workload not placed in a cluster, known in two: no guess, the convention
    assert book.selector(workload("cart")) == Selector(
        {"app.kubernetes.io/name": "cart"}, "convention"
    )
    document = {"west/shop/cart": {"team": "w"}, "shop/cart": {"team": "any"}}
    filed = LabelBook.from_mapping(document).over(book)
    assert filed.selector(in_west) == Selector({"team": "w"}, "file")
    in_east = msgspec.structs.replace(workload("cart"), cluster="east")
    assert filed.selector(in_east) == Selector({"team": "any"}, "file")
