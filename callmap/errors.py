"""The one exception family of callmap.

Every error callmap raises on purpose derives from :class:`CallmapError`, so a
caller can tell "callmap refused this" from a bug. Third-party exceptions are
translated into these at the adapter that calls the library.
"""

from __future__ import annotations


class CallmapError(Exception):
    """Base of every error callmap raises on purpose."""


class ConfigError(CallmapError):
    """A setting is missing or has a value callmap cannot use."""


class WireDecodeError(CallmapError):
    """A message does not decode to its topic's record type.

    Names the topic and the offending field (a JSON path such as
    ``records[3].qname``; None when the bytes are not JSON at all).
    """

    def __init__(self, topic: str, field: str | None, reason: str) -> None:
        self.topic = topic
        self.field = field
        self.reason = reason
        where = f" field {field!r}" if field else ""
        super().__init__(f"cannot decode message on {topic}:{where} {reason}")


class TemporaryError(CallmapError):
    """A fault that may pass (broker unreachable, timeout): retry with backoff."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(CallmapError):
    """A fault that retrying will not fix (authorisation, bad configuration)."""


class NotBuiltError(CallmapError):
    """A command that is planned but not built yet."""
