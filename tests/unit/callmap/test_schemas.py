"""The JSON Schema files in docs/schemas/ are generated from the code and valid."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from callmap.wire import RECORD_TYPES, Record, encode
from callmap.wire.schemas import render_schemas

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "docs" / "schemas"


def test_schema_files_are_current() -> None:
    rendered = render_schemas()
    on_disk = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}
    stale = sorted(
        name for name in rendered.keys() | on_disk.keys() if rendered.get(name) != on_disk.get(name)
    )
    assert not stale, f"stale schema files {stale}: run `make schemas`"


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_records_on_the_wire_validate_against_their_published_schema(
    samples: list[Record], record_type: type[Record]
) -> None:
    schema = json.loads((SCHEMA_DIR / f"{record_type.__name__}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    record = next(r for r in samples if type(r) is record_type)
    jsonschema.validate(msgspec.json.decode(encode(record)), schema)


def test_the_schema_rejects_what_the_decoder_rejects() -> None:
    schema = json.loads((SCHEMA_DIR / "Edge.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"v": 1, "edge_id": "x", "event": "renamed"}, schema)


def test_the_prose_contract_mentions_every_record_and_field() -> None:
    prose = (SCHEMA_DIR.parent / "wire-contract.md").read_text()
    missing = [
        f"{record_type.__name__}.{field.name}"
        for record_type in RECORD_TYPES
        for field in msgspec.structs.fields(record_type)
        if f"`{field.name}`" not in prose
    ]
    missing += [t.__name__ for t in RECORD_TYPES if t.__name__ not in prose]
    assert not missing, f"docs/wire-contract.md does not describe {missing}"
