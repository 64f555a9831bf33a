"""The development cluster's one error."""

from __future__ import annotations

from callmap.errors import CallmapError


class DevClusterError(CallmapError):
    """The development cluster could not be started, reached or stopped."""
