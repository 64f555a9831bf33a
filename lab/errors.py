"""The lab's errors, part of callmap's one exception family."""

from __future__ import annotations

from callmap.errors import CallmapError


class LabError(CallmapError):
    """The lab could not do what was asked (a command failed, a process did not start)."""


class TopologyError(LabError):
    """A topology file is not valid; the message names the offending key."""
