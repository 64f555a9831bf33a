"""While changes wait for Kafka, only the newest value of each key is kept."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry, generate_latest

from callmap.config import KafkaSettings, Settings
from callmap.counters import StageCounters
from callmap.wire import NODES, PODS, NodeIdentity
from watch.identitytable import Change
from watch.publisher import Publisher
from watch.runtime import IdentityOutput


def node(name: str, *ips: str) -> NodeIdentity:
    return NodeIdentity(cluster="c", name=name, ips=ips)


def test_a_newer_value_replaces_an_unsent_older_one_and_is_counted() -> None:
    counters = StageCounters()
    publisher = Publisher(KafkaSettings(), counters)
    publisher.submit(Change(NODES, "n1", node("n1", "192.168.0.1")))
    publisher.submit(Change(NODES, "n2", node("n2")))
    publisher.submit(Change(NODES, "n1", node("n1", "192.168.0.2")))
    publisher.submit(Change(NODES, "n1", None))
    publisher.submit(Change(PODS, "n1", None))  # another topic: another key
    assert len(publisher) == 3
    assert (counters.seen, counters.dropped) == (5, Counter({"superseded": 2}))
    publisher.discard()
    assert len(publisher) == 0


def test_metrics_expose_stages_gauges_and_watch_restarts() -> None:
    output = IdentityOutput(Settings(), "c", 60.0)
    output.tables.nodes.put("n1", node("n1", "192.168.0.1"))
    restarts = {"pods": Counter({"inactive": 2})}
    registry = CollectorRegistry()
    registry.register(output.collector(lambda: restarts, {"leading": ("Leads.", lambda: 1.0)}))
    text = generate_latest(registry).decode()
    assert 'callmap_watch_seen_total{stage="publish"} 1.0' in text
    assert 'callmap_watch_restarts_total{reason="inactive",resource="pods"} 2.0' in text
    assert "callmap_watch_pending_changes 1.0" in text and "callmap_watch_nodes 1.0" in text
    assert "callmap_watch_leading 1.0" in text
