"""How the calls went, as the conntrack source tells it on this machine's kernel:
failed connects, ends in order and by reset, and bytes, held to the client's own
outcomes and to nftables counters in its namespace (:mod:`helpers.ctnet`).

Skipped without root, ``ip netns`` or ``nft``.
"""

from __future__ import annotations

import pytest
from helpers.ctnet import NOBODY_PORT, S2, SERVICE, SERVICE_PORT, CtNet, Source, ip

from callmap.wire import FlowHealth, SocketObservation
from capture.conntrack import counts_bytes

pytestmark = pytest.mark.netns


def test_a_connect_nobody_answers_is_no_call_but_a_failed_connect(
    ct_net: CtNet, source: Source
) -> None:
    call = ct_net.call(S2[4], NOBODY_PORT)
    assert call.outcome == "refused"  # the client's own view
    source.until(lambda: bool(source.of(call)))
    (record,) = source.of(call)
    assert (record.remote_ip, record.remote_port) == (S2[4], NOBODY_PORT)
    assert record.health == FlowHealth(failed=1)  # opened nothing: health alone, no call


def test_health_of_calls_matches_what_the_client_saw_and_its_own_byte_counters(
    ct_net: CtNet, source: Source
) -> None:
    """One call closed in order, one reset by the server: the health the tracker tells
    of the service's calls against the client's own outcomes, and its bytes against
    nftables counters in the client's namespace (the same packets, counted apart)."""
    ct_net.count_bytes()
    calls = [ct_net.call(SERVICE[4], SERVICE_PORT, reset=reset) for reset in (False, True)]
    assert [call.outcome for call in calls] == ["answered", "reset"]
    sent, received = ct_net.counted_bytes()

    def told() -> FlowHealth:  # the calls of one client and service fold into one record
        return _total([r for r in source.records if r.dialled_ip == SERVICE[4]])

    source.until(lambda: told().closed >= 2)  # TIME_WAIT and CLOSE: no DESTROY needed
    for call in calls:  # end them now, as their timeouts and a GC pass would later
        ct_net.forget_flow(call)
    source.until(lambda: told().bytes_sent == sent)
    assert told() == FlowHealth(
        opened=2, closed=2, resets=1, bytes_sent=sent, bytes_received=received
    )


def _total(records: list[SocketObservation]) -> FlowHealth:
    total = FlowHealth()
    for record in records:
        assert record.health is not None
        total = total.plus(record.health)
    return total


def test_whether_a_namespace_counts_conntrack_bytes_is_read_from_its_own_sysctl(
    ct_net: CtNet,
) -> None:
    ip(f"netns exec {ct_net.client} sysctl -qw net.netfilter.nf_conntrack_acct=0")
    assert counts_bytes(ct_net.node) is True  # the fixture turned it on there only
    assert counts_bytes(ct_net.client) is False
    assert counts_bytes("cmlct-no-such-namespace") is None
