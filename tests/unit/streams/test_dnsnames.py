"""What DNS names mean inside a cluster."""

from __future__ import annotations

import pytest

from streams.dnsnames import (
    ApiServerName,
    ExternalName,
    HeadlessPodName,
    PodIpName,
    ServiceName,
    UnknownClusterName,
    classify,
)


@pytest.mark.parametrize(
    ("qname", "meaning"),
    [
        ("cartservice.shop.svc.cluster.local", ServiceName("shop", "cartservice")),
        (
            "mongodb-1.mongodb.data.svc.cluster.local",
            HeadlessPodName("data", "mongodb", "mongodb-1"),
        ),
        ("10-1-0-7.shop.pod.cluster.local", PodIpName("shop", "10.1.0.7")),
        ("fd00--a.shop.pod.cluster.local", PodIpName("shop", "fd00::a")),
        ("kubernetes.default.svc.cluster.local", ApiServerName()),
        ("api.stripe.com", ExternalName("api.stripe.com")),
        ("cluster.local.evil.com", ExternalName("cluster.local.evil.com")),
        ("weird.shop.cluster.local", UnknownClusterName("weird.shop.cluster.local")),
        (
            "not-an-ip.shop.pod.cluster.local",
            UnknownClusterName("not-an-ip.shop.pod.cluster.local"),
        ),
        ("cluster.local", UnknownClusterName("cluster.local")),
    ],
)
def test_names_are_classified_by_their_shape(qname: str, meaning: object) -> None:
    assert classify(qname) == meaning


def test_the_cluster_domain_is_configurable() -> None:
    assert classify("cart.shop.svc.corp.internal", "corp.internal") == ServiceName("shop", "cart")
    assert classify("cart.shop.svc.cluster.local", "corp.internal") == ExternalName(
        "cart.shop.svc.cluster.local"
    )
