"""JSON Schema files for outside consumers, generated from the record types.

``docs/schemas/<Record>.json`` are the output of :func:`render_schemas`; a test
fails when they are stale, and ``callmap dev schemas`` writes them anew.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from callmap.wire.records import RECORD_TYPES
from callmap.wire.topics import ALL_TOPICS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def render_schemas() -> dict[str, str]:
    """File name -> JSON Schema text, one file per record type."""
    topics = {spec.record: spec.name for spec in ALL_TOPICS}
    files: dict[str, str] = {}
    for record_type in RECORD_TYPES:
        schema = msgspec.json.schema(record_type)
        document = {
            "$schema": SCHEMA_DIALECT,
            "$id": f"callmap/{record_type.__name__}.v{record_type.version}.json",
            **({"x-callmap-topic": topics[record_type]} if record_type in topics else {}),
            **schema,
        }
        files[f"{record_type.__name__}.json"] = (
            json.dumps(document, indent=2, sort_keys=True) + "\n"
        )
    return files


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into ``directory``, removing stale ones."""
    directory.mkdir(parents=True, exist_ok=True)
    files = render_schemas()
    for old in directory.glob("*.json"):
        if old.name not in files:
            old.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
