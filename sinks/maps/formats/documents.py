"""Kubernetes objects as YAML or JSON: one stream, or one file per object.

YAML goes through PyYAML's safe dumper with ``allow_unicode=False``: every
string is quoted or escaped as YAML needs, and non-ASCII characters (such as a
right-to-left override in a hostile name) appear as ``\\u`` escapes a reviewer
can see. A JSON stream of several objects is a ``v1`` ``List``, which
``kubectl apply -f`` takes. File names (for one file per object, written by
:mod:`sinks.maps.output`) come from the objects' (validated) names, never from
raw input. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

from sinks.escape import k8s_name


def to_yaml(documents: Sequence[dict[str, Any]]) -> str:
    """A YAML stream (``---`` between objects); empty for no objects."""
    return (
        yaml.safe_dump_all(
            documents, sort_keys=False, allow_unicode=False, default_flow_style=False, width=100
        )
        if documents
        else ""
    )


def to_json(documents: Sequence[dict[str, Any]]) -> str:
    """One object as itself; several (or none) as a ``v1`` ``List``."""
    if len(documents) == 1:
        return json.dumps(documents[0], indent=2) + "\n"
    return (
        json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents)}, indent=2) + "\n"
    )


def render(documents: Sequence[dict[str, Any]], encoding: str) -> str:
    return to_json(documents) if encoding == "json" else to_yaml(documents)


def file_name(document: dict[str, Any], encoding: str) -> str:
    """``<kind>-<namespace>-<name>.<yaml|json>``, lower case."""
    meta = document.get("metadata", {})
    stem = f"{document.get('kind', 'object')}-{meta.get('namespace', '')}-{meta.get('name', '')}"
    return f"{k8s_name(stem.lower(), 200)}.{'json' if encoding == 'json' else 'yaml'}"
