"""How an inventory's versions become changes (no broker: the publisher's queue is the output)."""

from __future__ import annotations

from pathlib import Path

from callmap.config import Settings
from callmap.inventory import load_inventory, pod_uid
from watch.filewatch import InventoryWatcher

LIVE = "{namespace: shop, name: web-1, ips: [10.0.0.1]}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher(tmp_path: Path, clock: Clock, text: str) -> InventoryWatcher:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return InventoryWatcher(Settings(), path, cluster="lab", retention=60.0, clock=clock)


def test_a_deleted_entry_is_published_once_then_tombstoned_though_it_stays(tmp_path: Path) -> None:
    clock = Clock()
    text = f"pods: [{LIVE}, {{namespace: shop, name: old-1, ips: [10.0.0.1], deleted: 990}}]"
    inventory_watcher = watcher(tmp_path, clock, text)
    pods = inventory_watcher.output.tables.pods
    old = pod_uid("lab", "shop", "old-1")
    assert inventory_watcher.apply(load_inventory(text)) == 2
    record = pods.get(old)
    assert record is not None and record.deleted == 990.0
    clock.now = 1049.0
    assert pods.expire(clock.now) == []
    clock.now = 1050.0  # 990 + 60
    assert [r.uid for r in pods.expire(clock.now)] == [old]
    assert inventory_watcher.apply(load_inventory(text)) == 0  # still in the file: stays gone
    assert old not in pods


def test_an_entry_deleted_longer_ago_than_the_retention_is_never_published(
    tmp_path: Path,
) -> None:
    clock = Clock()
    text = f"pods: [{LIVE}, {{namespace: shop, name: old-1, deleted: 10}}]"
    inventory_watcher = watcher(tmp_path, clock, text)
    assert inventory_watcher.apply(load_inventory(text)) == 1
    assert len(inventory_watcher.output.publisher) == 1


def test_an_entry_removed_from_the_file_is_deleted_then_tombstoned(tmp_path: Path) -> None:
    clock = Clock()
    inventory_watcher = watcher(tmp_path, clock, f"pods: [{LIVE}]")
    pods = inventory_watcher.output.tables.pods
    web = pod_uid("lab", "shop", "web-1")
    inventory_watcher.apply(load_inventory(f"pods: [{LIVE}]"))
    clock.now = 1100.0
    assert inventory_watcher.apply(load_inventory("pods: []")) == 1
    record = pods.get(web)
    assert record is not None and record.deleted == 1100.0
    assert [r.uid for r in pods.expire(1160.0)] == [web]


def test_a_cluster_given_on_the_command_line_wins_over_the_file_on_every_reload(
    tmp_path: Path,
) -> None:
    clock = Clock()
    text = f"cluster: shop\npods: [{LIVE}]"
    inventory_watcher = watcher(tmp_path, clock, text)  # --cluster lab
    assert inventory_watcher.apply(load_inventory(text)) == 1
    changed = f"cluster: shop\npods: [{LIVE}, {{namespace: shop, name: web-2, ips: [10.0.0.2]}}]"
    assert inventory_watcher.apply(load_inventory(changed)) == 1
    assert inventory_watcher.output.tables.pods.get(pod_uid("lab", "shop", "web-2")) is not None
