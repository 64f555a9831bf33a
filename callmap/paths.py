"""Where callmap keeps downloads and state on a development machine.

Everything large (Kafka jars, broker data, virtual environments) lives in one
cache directory outside the repository, so a fresh clone reuses it and a
``git clean`` never throws it away.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$CALLMAP_CACHE``, else ``$XDG_CACHE_HOME/callmap``, else ``~/.cache/callmap``."""
    explicit = os.environ.get("CALLMAP_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "callmap"
