"""List, then watch, one resource for as long as the watcher leads.

The loop kopf and client-go's reflector follow: list every object, page by
page, then watch from the list's resourceVersion with bookmarks, resuming each
watch request from the last version seen. A watch the server ends (its
``timeoutSeconds``) resumes at once; one that stays silent past the inactivity
timeout is restarted; a 410 Gone lists again; any other fault that may pass is
retried after an exponential backoff (from the last version, so a relist
happens only when the server says so), and so is a watch that ends at once
having sent nothing (client-go's "very short watch"), rather than spinning.
After every complete list the handler reconciles: what it had and the list
did not is deleted.

A :class:`Handler` receives every object (listed or watched) and the list's
boundaries; the reflector knows nothing about what the objects mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Literal, Protocol

from callmap.backoff import Backoff
from callmap.errors import TemporaryError
from watch.kubeclient import Gone, Inactive, Page, Resource
from watch.options import WatchTimeouts

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
EVENT_TYPES: frozenset[str] = frozenset({"ADDED", "MODIFIED", "DELETED"})
SHORT_WATCH = 1.0  # seconds: a watch that ends sooner, having sent nothing, is suspect


class Source(Protocol):
    """Lists and watches (``watch.kubeclient.KubeApi`` against a real API server)."""

    async def list_page(self, resource: Resource, limit: int, token: str | None) -> Page: ...

    def watch(
        self,
        resource: Resource,
        resource_version: str,
        *,
        timeout_seconds: int,
        inactivity_timeout: float,
    ) -> AsyncGenerator[dict[str, Any], None]: ...


class Handler(Protocol):
    """What one resource's objects mean to the watcher."""

    async def begin_list(self) -> None:
        """A full list starts (again): forget what the previous one collected."""

    async def listed(self, obj: Any) -> None:
        """One object of the list."""

    async def end_list(self) -> None:
        """The list is complete: reconcile against it."""

    async def event(self, kind: EventType, obj: Any) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""


class Reflector:
    """Keeps one :class:`Handler` in step with one resource, until cancelled."""

    def __init__(
        self,
        api: Source,
        resource: Resource,
        handler: Handler,
        timeouts: WatchTimeouts,
        *,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api = api
        self.resource = resource
        self.handler = handler
        self.timeouts = timeouts
        self._jitter = jitter
        self._sleep = sleep
        self.listed = asyncio.Event()
        """Set once the first full list has been handed over."""
        self.lists = 0
        self.events = 0
        self.restarts: Counter[str] = Counter()
        """Watch restarts by reason: ``ended`` (by the server, normally), ``short``
        (ended at once with nothing), ``inactive``, ``gone``, ``error``."""
        self.version: str | None = None
        """The last resourceVersion seen; None when the next step is a list."""

    async def run(self) -> None:
        """List and watch until cancelled; a PermanentError ends it (and the watcher)."""
        backoff = Backoff(self.timeouts.initial_backoff, self.timeouts.max_backoff)
        while True:
            try:
                if self.version is None:
                    self.version = await self.list_all()
                    backoff.reset()
                started = asyncio.get_running_loop().time()
                received = await self._watch(self.version)
                lasted = asyncio.get_running_loop().time() - started
                if received or lasted >= SHORT_WATCH:
                    self.restarts["ended"] += 1
                    backoff.reset()
                    continue
                # Ended at once with nothing: the server refuses it in a way that looks
                # like success. Back off rather than spin.
                self.restarts["short"] += 1
                pause = backoff.next()
                log.warning(
                    "%s: a watch ended at once; retrying in %.1fs", self.resource.plural, pause
                )
                await self._sleep(pause)
            except Gone as exc:
                self.restarts["gone"] += 1
                log.info("%s; listing again", exc)
                self.version = None
            except Inactive as exc:
                self.restarts["inactive"] += 1
                log.info("%s; restarting the watch", exc)
            except TemporaryError as exc:
                self.restarts["error"] += 1
                pause = backoff.next()
                log.warning("%s; retrying in %.1fs", exc, pause)
                await self._sleep(pause)

    async def list_all(self) -> str:
        """One full list, page by page, handed to the handler; its resourceVersion."""
        await self.handler.begin_list()
        token: str | None = None
        while True:
            page = await self.api.list_page(self.resource, self.timeouts.page_size, token)
            for obj in page.items:
                await self.handler.listed(obj)
            await asyncio.sleep(0)  # a page can take a while: let the Lease renew
            del page.items[:]  # let the page's objects go before the next page arrives
            token = page.continue_token
            if not token:
                break
        await self.handler.end_list()
        self.lists += 1
        self.listed.set()
        log.debug("%s listed at version %s", self.resource.plural, page.resource_version)
        return page.resource_version

    async def _watch(self, version: str) -> int:
        """One watch request, keeping ``self.version`` at the last version it saw;
        how many events and bookmarks it delivered."""
        received = 0
        seconds = int(self.timeouts.watch_timeout * (1 + 0.25 * self._jitter()))
        events = self.api.watch(
            self.resource,
            version,
            timeout_seconds=max(1, seconds),
            inactivity_timeout=self.timeouts.inactivity_timeout,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                received += 1
                obj = event.get("object")
                meta = obj.get("metadata") if isinstance(obj, dict) else None
                seen = meta.get("resourceVersion") if isinstance(meta, dict) else None
                kind = event["type"]
                if kind in EVENT_TYPES:
                    self.events += 1
                    await self.handler.event(kind, obj)
                elif kind != "BOOKMARK":
                    log.warning("%s: ignoring a %r event", self.resource.plural, kind)
                if isinstance(seen, str) and seen:
                    self.version = seen  # only once handled: a failed event is watched again
        return received
