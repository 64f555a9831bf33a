"""Fixtures of the capture integration tests (the networks live in dnsnet.py and ctnet.py)."""

from collections.abc import Iterator

import pytest
from helpers.ctnet import CtNet, Source, conntrack_source, ct_network, skip_reason
from helpers.dnsnet import dns_net

__all__ = ["ct_net", "dns_net", "source"]


@pytest.fixture(scope="module")
def ct_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtNet]:
    """A conntrack network of its own for each test module that asks for one."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with ct_network(tmp_path_factory.mktemp("ctservers")) as net:
        yield net


@pytest.fixture
def source(ct_net: CtNet) -> Iterator[Source]:
    with conntrack_source(ct_net) as heard:
        yield heard
