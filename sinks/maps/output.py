"""Where the map commands write: stdout, one file, or one file per object.

The formats (:mod:`sinks.maps.formats`) only build text and bytes; this module
puts them somewhere. Stdout gets the bytes unchanged (no newline translation),
so a document is the same whether piped or written with ``-o``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sinks.maps.formats.documents import file_name, render


def write_output(data: str | bytes, output: Path | None) -> None:
    """``data`` to the file ``output``, or to stdout when it is None."""
    raw = data.encode() if isinstance(data, str) else data
    if output is None:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
    else:
        output.write_bytes(raw)


def names_directory(output: str) -> bool:
    """Whether ``-o`` asks for one file per object: an existing directory, or a path ending in /.

    Takes the argument as given: a :class:`~pathlib.Path` drops the trailing ``/``.
    """
    return output.endswith("/") or Path(output).is_dir()


def write_split(documents: Sequence[dict[str, Any]], directory: Path, encoding: str) -> list[Path]:
    """One file per object in ``directory`` (made if missing); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for document in documents:
        path = directory / file_name(document, encoding)
        path.write_text(render([document], encoding))
        written.append(path)
    return written
