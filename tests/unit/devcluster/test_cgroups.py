"""A node's cgroup root, made and removed in every hierarchy (on a directory tree like cgroupfs)."""

from __future__ import annotations

from pathlib import Path

from devcluster import cgroups


def fake_v1(base: Path) -> Path:
    for controller in ("cpu", "cpuset", "memory", "unified"):
        (base / controller).mkdir(parents=True)
    (base / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (base / "cpuset" / "cpuset.mems").write_text("0\n")
    return base


def test_the_root_is_made_in_every_v1_hierarchy_but_the_unified_one(tmp_path: Path) -> None:
    base = fake_v1(tmp_path)
    # cgroupfs creates a new cpuset's files empty; a plain directory tree does not, so
    # make them as the kernel would when the directories appear.
    for level in ("callmap", "callmap/dev", "callmap/dev/node-1"):
        (base / "cpuset" / level).mkdir()
        for setting in ("cpuset.cpus", "cpuset.mems"):
            (base / "cpuset" / level / setting).write_text("\n")
    cgroups.ensure_root("/callmap/dev/node-1", base)
    assert (base / "cpu/callmap/dev/node-1").is_dir() and (
        base / "memory/callmap/dev/node-1"
    ).is_dir()
    assert not (base / "unified/callmap").exists()
    assert (base / "cpuset/callmap/dev/node-1/cpuset.cpus").read_text() == "0-1\n"
    assert cgroups.exists("/callmap/dev/node-1", base)


def test_removal_goes_deepest_first_and_takes_the_empty_parents(tmp_path: Path) -> None:
    base = fake_v1(tmp_path)
    for controller in ("cpu", "memory"):
        (base / controller / "callmap/dev/node-1/kubepods/besteffort").mkdir(parents=True)
    (base / "cpu/callmap/dev/node-2").mkdir(parents=True)
    cgroups.remove_root("/callmap/dev/node-1", base)
    assert not cgroups.exists("/callmap/dev/node-1", base)
    assert (base / "cpu/callmap/dev/node-2").is_dir()  # the other node's stays
    assert not (base / "memory/callmap").exists()
