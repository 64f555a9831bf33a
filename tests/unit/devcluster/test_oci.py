"""The OCI archive writer: digests that match content, the layer's files and modes, determinism."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from devcluster import oci

REFERENCE = "localhost/callmap/test:1"
CONFIG = oci.ImageConfig(
    entrypoint=("/bin/tool",),
    cmd=("--serve",),
    env=("MODE=test",),
    user="65535:65535",
    workdir="/srv",
    labels={"org.opencontainers.image.title": "tool"},
)
FILES = [
    oci.LayerFile("/bin/tool", b"\x7fELF pretend program", 0o755),
    oci.LayerFile("/etc/tool/settings.conf", b"answer = 42\n", 0o600),
]


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def blob(contents: dict[str, bytes], digest: str) -> bytes:
    return contents["blobs/sha256/" + digest.removeprefix("sha256:")]


def unpack(archive: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], bytes]:
    """(index, manifest, config, uncompressed layer) of a one-image archive."""
    contents = members(archive)
    index = json.loads(contents["index.json"])
    manifest = json.loads(blob(contents, index["manifests"][0]["digest"]))
    config = json.loads(blob(contents, manifest["config"]["digest"]))
    layer = gzip.decompress(blob(contents, manifest["layers"][0]["digest"]))
    return index, manifest, config, layer


def test_every_blob_is_stored_under_the_digest_of_its_content() -> None:
    contents = members(oci.archive_bytes(oci.build_image(FILES, CONFIG, REFERENCE)))
    blobs = {name: data for name, data in contents.items() if name.startswith("blobs/")}
    assert len(blobs) == 3  # layer, config, manifest
    for name, data in blobs.items():
        assert name == "blobs/sha256/" + hashlib.sha256(data).hexdigest()
    assert json.loads(contents["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}


def test_descriptors_give_the_digest_and_size_of_what_they_point_at() -> None:
    archive = oci.archive_bytes(oci.build_image(FILES, CONFIG, REFERENCE))
    contents = members(archive)
    index, manifest, _, _ = unpack(archive)
    for descriptor in [index["manifests"][0], manifest["config"], *manifest["layers"]]:
        assert len(blob(contents, descriptor["digest"])) == descriptor["size"]
    assert index["manifests"][0]["mediaType"] == oci.MANIFEST_MEDIA_TYPE
    assert manifest["layers"][0]["mediaType"] == oci.LAYER_MEDIA_TYPE


def test_the_config_names_the_uncompressed_layer_and_how_to_run_the_image() -> None:
    _, _, config, layer = unpack(oci.archive_bytes(oci.build_image(FILES, CONFIG, REFERENCE)))
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
    }
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"] == {
        "Entrypoint": ["/bin/tool"],
        "Cmd": ["--serve"],
        "Env": ["MODE=test"],
        "User": "65535:65535",
        "WorkingDir": "/srv",
        "Labels": {"org.opencontainers.image.title": "tool"},
    }


def test_empty_settings_are_left_out_of_the_config() -> None:
    config = oci.config_document(oci.ImageConfig(entrypoint=("/pause",)), "sha256:00")
    assert config["config"] == {"Entrypoint": ["/pause"]}


def test_the_index_names_the_image_for_oci_tools_and_for_containerd() -> None:
    index, _, _, _ = unpack(oci.archive_bytes(oci.build_image(FILES, CONFIG, REFERENCE)))
    (entry,) = index["manifests"]
    assert entry["annotations"] == {
        "org.opencontainers.image.ref.name": REFERENCE,
        "io.containerd.image.name": REFERENCE,
    }
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}


def test_the_layer_lists_the_files_with_their_modes_and_parent_directories() -> None:
    _, _, _, layer = unpack(oci.archive_bytes(oci.build_image(FILES, CONFIG, REFERENCE)))
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        listed = [(m.name, m.type, m.mode, m.uid, m.gid, m.mtime) for m in tar.getmembers()]
        program = tar.extractfile("bin/tool").read()  # type: ignore[union-attr]
    assert listed == [
        ("bin", tarfile.DIRTYPE, 0o755, 0, 0, 0),
        ("bin/tool", tarfile.REGTYPE, 0o755, 0, 0, 0),
        ("etc", tarfile.DIRTYPE, 0o755, 0, 0, 0),
        ("etc/tool", tarfile.DIRTYPE, 0o755, 0, 0, 0),
        ("etc/tool/settings.conf", tarfile.REGTYPE, 0o600, 0, 0, 0),
    ]
    assert program == b"\x7fELF pretend program"


def test_a_layer_file_can_come_from_a_host_file(tmp_path: Path) -> None:
    host = tmp_path / "pause"
    host.write_bytes(b"binary")
    layer = oci.layer_archive([oci.LayerFile("/pause", host, 0o755)])
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        assert tar.extractfile("pause").read() == b"binary"  # type: ignore[union-attr]


def test_the_same_input_gives_the_same_bytes_whatever_the_order_of_files() -> None:
    first = oci.archive_bytes(oci.build_image(FILES, CONFIG, REFERENCE))
    second = oci.archive_bytes(oci.build_image(list(reversed(FILES)), CONFIG, REFERENCE))
    assert first == second
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


def test_any_change_of_content_mode_or_config_changes_the_manifest_digest() -> None:
    digest = oci.build_image(FILES, CONFIG, REFERENCE).digest
    changed_content = [oci.LayerFile("/bin/tool", b"other", 0o755), FILES[1]]
    changed_mode = [oci.LayerFile("/bin/tool", FILES[0].data(), 0o700), FILES[1]]
    changed_config = oci.ImageConfig(entrypoint=("/bin/tool", "-v"))
    assert len({
        digest,
        oci.build_image(changed_content, CONFIG, REFERENCE).digest,
        oci.build_image(changed_mode, CONFIG, REFERENCE).digest,
        oci.build_image(FILES, changed_config, REFERENCE).digest,
    }) == 4  # fmt: skip


def test_write_archive_writes_the_archive_and_reads_back_its_name_and_digest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "image.tar"
    digest = oci.write_archive(path, FILES, CONFIG, REFERENCE)
    assert path.read_bytes() == oci.archive_bytes(oci.build_image(FILES, CONFIG, REFERENCE))
    assert oci.archive_manifest(path) == (REFERENCE, digest)
    assert [p.name for p in tmp_path.iterdir()] == ["image.tar"]  # no partial file left


@pytest.mark.parametrize("path", ["relative/file", "/", "/etc/../escape"])
def test_paths_outside_the_image_are_refused(path: str) -> None:
    with pytest.raises(oci.OciFormatError):
        oci.layer_archive([oci.LayerFile(path, b"")])


def test_a_path_given_twice_or_as_file_and_directory_is_refused() -> None:
    with pytest.raises(oci.OciFormatError, match="twice"):
        oci.layer_archive([oci.LayerFile("/a", b""), oci.LayerFile("/a", b"")])
    with pytest.raises(oci.OciFormatError, match="both"):
        oci.layer_archive([oci.LayerFile("/a", b""), oci.LayerFile("/a/b", b"")])


def test_reading_something_that_is_not_an_archive_says_so(tmp_path: Path) -> None:
    path = tmp_path / "not.tar"
    path.write_bytes(b"nothing here")
    with pytest.raises(oci.OciFormatError, match="not an OCI image archive"):
        oci.archive_manifest(path)
