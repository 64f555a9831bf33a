"""The list-then-watch loop's decisions, step by step, on a scripted source.

The loop runs against the real API server in tests/integration/kube; here a
source plays back pages, events and errors in a fixed order, so that each
rule is checked exactly: resume from the last version, relist on 410 only,
restart a silent watch, back off exponentially on errors (a recorded sleep),
and never skip an event whose handling failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from callmap.errors import PermanentError, TemporaryError
from watch.kubeclient import POD, Gone, Inactive, Page, Resource
from watch.options import WatchTimeouts
from watch.reflector import EventType, Reflector

Step = Page | list[dict[str, Any]] | BaseException


def event(kind: str, name: str, version: str) -> dict[str, Any]:
    return {"type": kind, "object": {"metadata": {"name": name, "resourceVersion": version}}}


class Script:
    """Plays back list pages and watch requests in order; records what was asked."""

    def __init__(self, lists: list[Page | BaseException], watches: list[Step]) -> None:
        self.lists, self.watches = lists, watches
        self.asked: list[tuple[str, str | None]] = []
        self.done = asyncio.Event()

    async def list_page(self, resource: Resource, limit: int, token: str | None) -> Page:
        self.asked.append(("list", token))
        step = self.lists.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def watch(
        self,
        resource: Resource,
        resource_version: str,
        *,
        timeout_seconds: int,
        inactivity_timeout: float,
    ) -> AsyncGenerator[dict[str, Any], None]:
        self.asked.append(("watch", resource_version))
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()  # the test cancels the loop here
        step = self.watches.pop(0)
        if isinstance(step, BaseException):
            raise step
        for item in step:
            if isinstance(item, BaseException):
                raise item
            yield item


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.log: list[str] = []
        self.fail_on = fail_on

    async def begin_list(self) -> None:
        self.log.append("begin")

    async def listed(self, obj: Any) -> None:
        self.log.append(f"listed {obj['metadata']['name']}")

    async def end_list(self) -> None:
        self.log.append("end")

    async def event(self, kind: EventType, obj: Any) -> None:
        name = obj["metadata"]["name"]
        if name == self.fail_on:
            self.fail_on = None
            raise TemporaryError("the owner could not be fetched")
        self.log.append(f"{kind} {name}")


def page(names: list[str], version: str, token: str | None = None) -> Page:
    return Page([{"metadata": {"name": n}} for n in names], version, token)


async def run(script: Script, handler: Recorder) -> tuple[Reflector, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    timeouts = WatchTimeouts(initial_backoff=0.5, max_backoff=4.0)
    reflector = Reflector(script, POD, handler, timeouts, sleep=sleep)  # type: ignore[arg-type]
    task = asyncio.create_task(reflector.run())
    waiter = asyncio.create_task(script.done.wait())
    await asyncio.wait([task, waiter], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    waiter.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)
    return reflector, sleeps


async def test_it_lists_page_by_page_then_watches_from_the_lists_version() -> None:
    script = Script(
        [page(["a", "b"], "10", token="t1"), page(["c"], "10")],
        [[event("ADDED", "d", "11"), event("BOOKMARK", "", "12"), event("MODIFIED", "a", "13")]],
    )
    handler = Recorder()
    reflector, _ = await run(script, handler)
    assert handler.log == [
        "begin",
        "listed a",
        "listed b",
        "listed c",
        "end",
        "ADDED d",
        "MODIFIED a",
    ]
    assert script.asked == [("list", None), ("list", "t1"), ("watch", "10"), ("watch", "13")]
    assert reflector.listed.is_set() and reflector.restarts == {"ended": 1}


async def test_a_bookmark_moves_the_version_on() -> None:
    script = Script([page([], "10")], [[event("BOOKMARK", "", "20")]])
    await run(script, Recorder())
    assert script.asked[-1] == ("watch", "20")


async def test_gone_lists_again_and_nothing_else_does() -> None:
    script = Script(
        [page(["a"], "10"), page(["a"], "30")],
        [
            [event("ADDED", "b", "11"), Inactive("silent")],
            [TemporaryError("connection reset")],
            [Gone("too old resource version")],
        ],
    )
    handler = Recorder()
    reflector, _ = await run(script, handler)
    assert script.asked == [
        ("list", None),
        ("watch", "10"),
        ("watch", "11"),  # restarted after the silence, from the last event
        ("watch", "11"),  # after the error, from the same version
        ("list", None),  # 410: list again
        ("watch", "30"),
    ]
    assert handler.log.count("begin") == 2
    assert reflector.restarts == {"inactive": 1, "error": 1, "gone": 1}


async def test_errors_back_off_exponentially_up_to_the_maximum_then_start_over() -> None:
    failures: list[Page | BaseException] = [TemporaryError(f"down {n}") for n in range(6)]
    events = [event("BOOKMARK", "", "11")]
    script = Script([*failures, page([], "10")], [events, [TemporaryError("again")]])
    reflector, sleeps = await run(script, Recorder())
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 0.5]
    assert reflector.restarts == {"error": 7, "ended": 1}


async def test_a_watch_that_ends_at_once_with_nothing_backs_off_instead_of_spinning() -> None:
    script = Script([page([], "10")], [[], [], [], [event("BOOKMARK", "", "11")], []])
    reflector, sleeps = await run(script, Recorder())
    assert sleeps == [0.5, 1.0, 2.0, 0.5]
    assert reflector.restarts == {"short": 4, "ended": 1}


async def test_an_event_whose_handling_failed_is_watched_again() -> None:
    script = Script(
        [page([], "10")],
        [[event("ADDED", "a", "11"), event("ADDED", "b", "12")], [event("ADDED", "b", "12")]],
    )
    handler = Recorder(fail_on="b")
    await run(script, handler)
    assert script.asked[-2:] == [("watch", "11"), ("watch", "12")]
    assert handler.log[-2:] == ["ADDED a", "ADDED b"]


async def test_a_permanent_error_ends_the_loop() -> None:
    script = Script([PermanentError("forbidden: list pods")], [])
    reflector = Reflector(script, POD, Recorder(), WatchTimeouts())  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="forbidden"):
        await reflector.run()
