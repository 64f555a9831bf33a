"""A node's loss: the drops that lose data, summed over its agent processes, from the
latest running totals of each."""

from __future__ import annotations

from callmap.wire import DROP_KERNEL, DROP_OVERFLOW, DROP_TOO_OLD, CaptureStats, StageStats
from streams.nodeloss import MAX_BOOTS, NodeLoss


def stats(
    boot: str, seq: int, totals: dict[str, int], node: str = "node-a", ts: float = 0.0
) -> CaptureStats:
    return CaptureStats(
        cluster="c1",
        node=node,
        ts=ts or float(seq),
        interval=10.0,
        boot_id=boot,
        seq=seq,
        totals={"publish": StageStats(seen=100, emitted=90, dropped=totals)},
    )


def lost(loss: NodeLoss, node: str = "node-a") -> dict[str, int]:
    return {f.reason: f.records for f in loss.figures() if f.node == node and f.records}


def test_the_latest_totals_of_a_boot_count_and_a_missing_record_costs_nothing() -> None:
    loss = NodeLoss()
    loss.add(stats("b1", 1, {DROP_OVERFLOW: 5}))
    loss.add(stats("b1", 4, {DROP_OVERFLOW: 40, DROP_TOO_OLD: 2}))  # 2 and 3 never came
    assert lost(loss) == {DROP_OVERFLOW: 40, DROP_TOO_OLD: 2}


def test_a_repeated_or_older_record_changes_nothing() -> None:
    loss = NodeLoss()
    loss.add(stats("b1", 4, {DROP_OVERFLOW: 40}))
    loss.add(stats("b1", 3, {DROP_OVERFLOW: 30}))
    loss.add(stats("b1", 4, {DROP_OVERFLOW: 40}))
    assert lost(loss) == {DROP_OVERFLOW: 40}


def test_an_agent_restart_adds_a_boot_instead_of_resetting_the_figure() -> None:
    loss = NodeLoss()
    loss.add(stats("b1", 9, {DROP_KERNEL: 7}))
    loss.add(stats("b2", 1, {DROP_KERNEL: 1}))
    assert lost(loss) == {DROP_KERNEL: 8}


def test_filters_are_not_loss() -> None:
    loss = NodeLoss()
    loss.add(stats("b1", 1, {"not_from_port_53": 1000, "unchanged": 50}))
    assert lost(loss) == {}
    assert {f.reason for f in loss.figures()} == {DROP_KERNEL, DROP_OVERFLOW, DROP_TOO_OLD}


def test_nodes_are_apart() -> None:
    loss = NodeLoss()
    loss.add(stats("b1", 1, {DROP_OVERFLOW: 3}, node="node-a"))
    loss.add(stats("b9", 1, {DROP_OVERFLOW: 4}, node="node-b"))
    assert lost(loss, "node-a") == {DROP_OVERFLOW: 3}
    assert lost(loss, "node-b") == {DROP_OVERFLOW: 4}


def test_many_restarts_keep_their_sum_in_bounded_memory() -> None:
    loss = NodeLoss()
    for boot in range(MAX_BOOTS * 3):
        loss.add(stats(f"b{boot}", 1, {DROP_OVERFLOW: 1}, ts=float(boot + 1)))
    assert lost(loss) == {DROP_OVERFLOW: MAX_BOOTS * 3}
    assert len(loss._nodes[("c1", "node-a")].boots) <= MAX_BOOTS


def test_an_agent_without_totals_adds_each_interval() -> None:
    loss = NodeLoss()
    for _ in range(3):
        loss.add(
            CaptureStats(
                cluster="c1",
                node="node-a",
                ts=1.0,
                interval=10.0,
                stages={"publish": StageStats(dropped={DROP_OVERFLOW: 2})},
            )
        )
    assert lost(loss) == {DROP_OVERFLOW: 6}
