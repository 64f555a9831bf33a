"""Stopping a service cleanly on SIGTERM (Kubernetes) or SIGINT (a terminal).

A service either runs one coroutine that stops by being cancelled
(:func:`run_until_signalled`: its ``finally`` blocks flush and close), or has
a stop request of its own that lets it finish the step it is in
(:func:`on_stop_signals`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signals(action: Callable[[], object]) -> None:
    """Call ``action`` on SIGTERM or SIGINT, in the running loop.

    Signal handlers belong to the main thread; elsewhere (a service embedded
    in a test or another program) this does nothing and says so at debug level.
    """
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, action)
        except (ValueError, RuntimeError):
            log.debug("no handler for %s outside the main thread", signum.name)


def run_until_signalled(main: Coroutine[Any, Any, T]) -> T | None:
    """Run ``main`` in a new event loop until it ends or a stop signal cancels it.

    Cancelling lets its clean-up run; the result is ``main``'s, or None when a
    signal stopped it.
    """

    async def runner() -> T | None:
        task = asyncio.current_task()
        assert task is not None
        on_stop_signals(task.cancel)
        try:
            return await main
        except asyncio.CancelledError:
            log.info("stopped by a signal")
            return None

    return asyncio.run(runner())
