"""OCI image archives written from a list of files, as ``ctr images import`` reads them. Pure.

An archive is a tar of an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/<hex>``) holding one image for one platform: a single gzip
layer with the given files, an image config (entrypoint, command,
environment, user, working directory, labels) and a manifest tying them
together. ``index.json`` names the image twice, as
``org.opencontainers.image.ref.name`` (the OCI annotation) and
``io.containerd.image.name`` (what containerd's importer names the image by).

The output is a function of the input alone: entries sorted, owners root,
modification times the epoch, gzip headers without a name or a time, JSON
with sorted keys. Building the same files and config twice gives the same
bytes, so the same digests. Parent directories of the files are added to the
layer (mode 0755). Nothing here runs a process; the only I/O is reading the
host files a :class:`LayerFile` names and writing the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from devcluster.errors import DevClusterError

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class LayerFile:
    """One regular file of the layer."""

    path: str
    """Where it is in the image: an absolute path such as ``/pause``."""
    content: bytes | Path
    """Its bytes, or a host file to read them from."""
    mode: int = 0o644
    """Its permission bits (``0o755`` for a program)."""

    def data(self) -> bytes:
        return self.content.read_bytes() if isinstance(self.content, Path) else self.content


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What a container of the image runs, and as whom; the OCI config's ``config`` part."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    """``NAME=value`` entries."""
    user: str = ""
    workdir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    """The Go name of the platform's architecture (``amd64``, ``arm64``)."""
    os: str = "linux"


@dataclass(frozen=True, slots=True)
class Blob:
    """Content stored under its digest, and the descriptor that points at it."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True, slots=True)
class Image:
    """An image's blobs and the ``index.json`` that names it: what an archive holds."""

    reference: str
    layer: Blob
    config: Blob
    manifest: Blob
    index: bytes

    @property
    def digest(self) -> str:
        """The manifest's digest: what ``ctr images ls`` shows for the image."""
        return self.manifest.digest


class OciFormatError(DevClusterError):
    """A layer path or an archive is not what an OCI image needs."""


def build_image(files: Sequence[LayerFile], config: ImageConfig, reference: str) -> Image:
    """The image with ``files`` in its one layer, run as ``config`` says, named ``reference``."""
    layer_tar = layer_archive(files)
    layer = Blob(LAYER_MEDIA_TYPE, gzip.compress(layer_tar, compresslevel=6, mtime=0))
    config_blob = Blob(CONFIG_MEDIA_TYPE, _json(config_document(config, _sha256(layer_tar))))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor()],
    }
    manifest_blob = Blob(MANIFEST_MEDIA_TYPE, _json(manifest))
    entry = manifest_blob.descriptor() | {
        "platform": {"architecture": config.architecture, "os": config.os},
        "annotations": {REF_NAME: reference, CONTAINERD_NAME: reference},
    }
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [entry]}
    return Image(reference, layer, config_blob, manifest_blob, _json(index))


def layer_archive(files: Sequence[LayerFile]) -> bytes:
    """The uncompressed layer tar: ``files`` and their parent directories, sorted by path."""
    entries: dict[str, LayerFile] = {}
    for given in files:
        path = _layer_path(given.path)
        if path in entries:
            raise OciFormatError(f"{given.path} is in the layer twice")
        entries[path] = given
    directories = {str(up) for path in entries for up in PurePosixPath(path).parents} - {"."}
    clashes = sorted(directories & entries.keys())
    if clashes:
        raise OciFormatError(f"/{clashes[0]} is both a file and a directory in the layer")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directories | entries.keys()):
            file = entries.get(path)
            info = tarfile.TarInfo(path + "/" if file is None else path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if file is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = file.data()
                info.mode, info.size = file.mode, len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def config_document(config: ImageConfig, diff_id: str) -> dict[str, Any]:
    """The OCI image config of a one-layer image whose uncompressed layer has ``diff_id``."""
    runtime: dict[str, Any] = {}
    for key, value in (
        ("Entrypoint", list(config.entrypoint)),
        ("Cmd", list(config.cmd)),
        ("Env", list(config.env)),
        ("User", config.user),
        ("WorkingDir", config.workdir),
        ("Labels", dict(config.labels)),
    ):
        if value:
            runtime[key] = value
    return {
        "created": _EPOCH,
        "architecture": config.architecture,
        "os": config.os,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": _EPOCH, "created_by": "callmap devcluster"}],
    }


def archive_bytes(image: Image) -> bytes:
    """The image as an OCI layout tar, ready for ``ctr images import``."""
    members = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": image.index,
    }
    for blob in (image.layer, image.config, image.manifest):
        members["blobs/sha256/" + blob.digest.removeprefix("sha256:")] = blob.data
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs/", "blobs/sha256/"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.size = 0o644, 0, len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    return out.getvalue()


def write_archive(
    destination: Path, files: Sequence[LayerFile], config: ImageConfig, reference: str
) -> str:
    """Write the image's archive to ``destination`` (whole or not at all); its manifest digest."""
    image = build_image(files, config, reference)
    partial = destination.with_name(destination.name + ".partial")
    partial.write_bytes(archive_bytes(image))
    os.replace(partial, destination)
    return image.digest


def archive_manifest(archive: Path) -> tuple[str, str]:
    """(reference, manifest digest) of the one image an OCI archive's ``index.json`` names."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            if member is None:
                raise OciFormatError(f"{archive}: index.json is not a file")
            index = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as error:
        raise OciFormatError(f"{archive} is not an OCI image archive: {error}") from error
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise OciFormatError(f"{archive} names {len(manifests)} images, not one")
    annotations = manifests[0].get("annotations") or {}
    reference = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME) or ""
    return str(reference), str(manifests[0]["digest"])


def _layer_path(path: str) -> str:
    """``/usr/bin/x`` as a tar member name (``usr/bin/x``); refuses relative and ``..`` paths."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts or pure == PurePosixPath("/"):
        raise OciFormatError(f"a layer file needs an absolute path inside the image, not {path!r}")
    return str(pure.relative_to("/"))


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
