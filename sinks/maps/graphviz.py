"""Turns DOT into SVG or PNG with Graphviz's ``dot`` (Debian package ``graphviz``).

Only this module runs a program; writing ``.dot`` needs nothing installed.
The DOT text goes in on stdin, so no name from the map reaches a command line.
"""

from __future__ import annotations

import shutil
import subprocess

from callmap.errors import ConfigError, PermanentError

FORMATS = ("svg", "png")


def render_graph(dot: str, fmt: str, timeout: float = 120.0) -> bytes:
    """The picture of ``dot`` in ``fmt`` (svg or png)."""
    if fmt not in FORMATS:
        raise ConfigError(f"cannot draw {fmt!r}: choose one of {', '.join(FORMATS)} or dot")
    program = shutil.which("dot")
    if program is None:
        raise ConfigError("drawing SVG or PNG needs Graphviz's dot (apt-get install graphviz)")
    try:
        result = subprocess.run(
            [program, f"-T{fmt}"],
            input=dot.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PermanentError(f"dot did not finish within {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise PermanentError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout
