"""The development broker's pure parts: ids and the pid bookkeeping."""

from __future__ import annotations

from pathlib import Path

from devtools.kafka import DevBroker, new_cluster_id


def test_cluster_ids_never_look_like_options_and_decode_to_16_bytes() -> None:
    import base64

    for _ in range(2000):
        cluster_id = new_cluster_id()
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_pid_file_naming_someone_elses_process_is_ignored(tmp_path: Path) -> None:
    broker = DevBroker(tmp_path, port=1)
    (tmp_path / "broker.pid").write_text("1")  # init: alive, but not our broker
    status = broker.status()
    assert not status.running and status.pid is None
    assert broker.stop() is False
    assert not (tmp_path / "broker.pid").exists()
