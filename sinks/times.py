"""Wire times (epoch seconds) as ISO 8601 UTC, as every output writes them. Pure."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_time(ts: float, timespec: str = "milliseconds") -> str:
    """``2023-11-14T22:13:20.000Z``: ``ts`` in UTC, to ``timespec`` (``seconds`` too)."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
