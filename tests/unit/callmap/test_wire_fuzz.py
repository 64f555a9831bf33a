"""Fuzzing every topic's decoder: whatever bytes arrive, a consumer gets its topic's
record or one specific error (WireDecodeError, which every consumer dead-letters),
never another exception.

Inputs are valid messages of each topic, mutated: bytes flipped, cut, inserted;
JSON values swapped for others of any type; strings made huge or hostile; arrays
nested deep.
"""

from __future__ import annotations

from typing import Any

import msgspec
from helpers.wiresamples import sample_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callmap.errors import WireDecodeError
from callmap.wire import ALL_TOPICS, Record, decode, encode
from callmap.wire.topics import TopicSpec

SAMPLES: list[tuple[TopicSpec, bytes]] = [
    (spec, encode(record))
    for record in sample_records()
    for spec in ALL_TOPICS
    if isinstance(record, spec.record)
]

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
HOSTILE = st.sampled_from(
    [
        "x" * 1_000_000,
        "\x00\ud7ff\ufffd\u202e<script>|CEF:0|\r\n",
        "../../etc/passwd",
        "a." * 200,
        "",
    ]
)


def only_the_wire_error(spec: TopicSpec, data: bytes) -> None:
    try:
        record = decode(spec, data)
    except WireDecodeError as error:
        assert error.topic == spec.name
        return
    assert isinstance(record, spec.record | Record)


def replace_somewhere(value: Any, path: list[int], new: Any) -> Any:
    """``value`` with one nested value (chosen by ``path``) replaced by ``new``."""
    if not path or not isinstance(value, dict | list) or not value:
        return new
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = replace_somewhere(value[key], path[1:], new)  # type: ignore[index]
    return copy


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(SAMPLES),
    at=st.integers(min_value=0),
    cut=st.integers(min_value=0),
    junk=st.binary(max_size=20),
)
def test_mutated_bytes_decode_or_raise_the_wire_error(
    sample: tuple[TopicSpec, bytes], at: int, cut: int, junk: bytes
) -> None:
    spec, data = sample
    at %= len(data)
    flipped = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    only_the_wire_error(spec, flipped)
    only_the_wire_error(spec, data[: cut % len(data)])
    only_the_wire_error(spec, data[:at] + junk + data[at:])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(SAMPLES),
    path=st.lists(st.integers(min_value=0), min_size=1, max_size=4),
    new=JSON | HOSTILE,
)
def test_any_value_anywhere_decodes_or_raises_the_wire_error(
    sample: tuple[TopicSpec, bytes], path: list[int], new: Any
) -> None:
    spec, data = sample
    mutated = replace_somewhere(msgspec.json.decode(data), path, new)
    only_the_wire_error(spec, msgspec.json.encode(mutated))


def test_deep_nesting_raises_the_wire_error_not_a_recursion_error() -> None:
    for spec in ALL_TOPICS:
        only_the_wire_error(spec, b"[" * 100_000 + b"]" * 100_000)
        only_the_wire_error(spec, b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
