"""The process in every lab pod: it serves the pod's ports and makes its calls.

Run as ``python -m lab.caller SPEC.json`` inside the pod's network namespace
(``ip netns exec``, which also bind-mounts the pod's resolv.conf and hosts),
or as ``python -m lab.caller --env VARIABLE`` with the spec in that
environment variable (a container of the real-cluster lab). Standard library
only, so that a pod starts fast. The spec says::

    {"pod": "shop/frontend-...", "listen": [80], "hold": false, "status": "PATH",
     "calls": [{"to": "cartservice", "port": 7070, "rate": 2.0, "long_lived": false,
                "before_capture": false, "family": "any"}]}

and optionally ``"log": "PATH"`` (the call log below) and ``"release_file":
"PATH"`` (with ``hold``: the calls are released when that file exists, for a
process nobody can signal, such as a pod's).

Promises:

- it listens on every ``listen`` port (IPv4 and IPv6) and answers each line
  it receives with ``pong <pod>``;
- every call resolves its name through the C library (the pod's resolv.conf:
  search path, ``ndots:5``, TCP when the answer is truncated or ``use-vc``),
  connects over TCP to the addresses in the order the resolver gives until one
  accepts, sends ``ping <pod>`` and reads the answer; short calls repeat
  ``rate`` times a second, a long-lived one keeps its connection, pings over
  it every few seconds and reconnects when it breaks;
- with ``hold``, only ``before_capture`` calls run until SIGUSR1 (or the
  ``release_file``) releases the others; SIGTERM ends it;
- twice a second it rewrites ``status`` (atomically) with whether it listens
  and each call's successes, failures and last error;
- with ``log``, every call attempt (every ping of a long-lived connection)
  appends a JSON line ``{"t", "pod", "to", "addr", "port", "ok", "peer"}``:
  the time, the name or address as addressed, the address it connected to
  (or last tried; null when nothing resolved), whether the server answered,
  and the server's answer (``pong <ns>/<pod>``, ``pong external:<name>``);
  a long-lived connection's lines add ``opened`` (when it was opened), a
  failure's ``error``. The first attempt with a given outcome (``to``,
  ``addr``, ``port``, ``ok``, ``peer``, ``opened``) is always written, repeats
  at most every :data:`LOG_INTERVAL` seconds, so that the file stays small.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONNECT_TIMEOUT = 2.0
LONG_LIVED_PING = 5.0
LOG_INTERVAL = 5.0
"""Seconds between two log lines with the same outcome, per pod."""
RELEASE_POLL = 0.2
FAMILIES = {"any": socket.AF_UNSPEC, "4": socket.AF_INET, "6": socket.AF_INET6}


@dataclass
class CallState:
    spec: dict[str, Any]
    ok: int = 0
    failed: int = 0
    last_error: str | None = None
    last_peer: str | None = None
    open: bool = False
    last_addr: str | None = None
    """The address last connected to or tried (None: the name did not resolve)."""

    def report(self) -> dict[str, Any]:
        return {
            "to": self.spec["to"],
            "port": self.spec["port"],
            "before_capture": bool(self.spec.get("before_capture")),
            "ok": self.ok,
            "failed": self.failed,
            "open": self.open,
            "last_error": self.last_error,
            "last_peer": self.last_peer,
        }


class CallLog:
    """The call log: one JSON line per attempt, repeats of an outcome thinned out."""

    def __init__(self, path: str, pod: str, clock: Callable[[], float] = time.time) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1)  # noqa: SIM115  # open for the process's life
        self._pod = pod
        self._clock = clock
        self._last: dict[tuple[object, ...], float] = {}

    def record(
        self,
        state: CallState,
        ok: bool,
        peer: str | None = None,
        opened: float | None = None,
        error: str | None = None,
    ) -> None:
        now = self._clock()
        to, port = str(state.spec["to"]), int(state.spec["port"])
        key = (to, state.last_addr, port, ok, peer, opened)
        last = self._last.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            return
        self._last[key] = now
        line: dict[str, Any] = {"t": now, "pod": self._pod, "to": to, "addr": state.last_addr}
        line |= {"port": port, "ok": ok, "peer": peer}
        if opened is not None:
            line["opened"] = opened
        if error is not None:
            line["error"] = error
        self._file.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self._file.close()


@dataclass
class Caller:
    spec: dict[str, Any]
    calls: list[CallState] = field(default_factory=list)
    listening: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    log: CallLog | None = None

    @property
    def pod(self) -> str:
        return str(self.spec["pod"])

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.released.set)
        if not self.spec.get("hold"):
            self.released.set()
        if self.spec.get("log"):
            self.log = CallLog(str(self.spec["log"]), self.pod)
        servers = [
            await asyncio.start_server(self._serve, host=None, port=port, reuse_address=True)
            for port in self.spec.get("listen", [])
        ]
        self.listening = True
        self.calls = [CallState(call) for call in self.spec.get("calls", [])]
        tasks = [asyncio.create_task(self._status_loop(), name="status")]
        if self.spec.get("release_file") and not self.released.is_set():
            tasks.append(asyncio.create_task(self._release_when_file(), name="release"))
        for index, state in enumerate(self.calls):
            body = self._long_lived(state) if state.spec["long_lived"] else self._repeat(state)
            tasks.append(asyncio.create_task(body, name=f"call-{index}"))
        await self.stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            server.close()
        self._write_status()
        if self.log is not None:
            self.log.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.startswith(b"ping"):
                    break
                writer.write(f"pong {self.pod}\n".encode())
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # a client that goes away mid-call is the client's failure to count
        finally:
            writer.close()

    async def _release_when_file(self) -> None:
        path = Path(str(self.spec["release_file"]))
        while not path.exists():
            await asyncio.sleep(RELEASE_POLL)
        self.released.set()

    async def _wait_turn(self, state: CallState) -> None:
        if not state.spec.get("before_capture"):
            await self.released.wait()

    async def _repeat(self, state: CallState) -> None:
        await self._wait_turn(state)
        interval = 1.0 / float(state.spec["rate"])
        await asyncio.sleep(random.uniform(0, min(interval, 1.0)))  # pods do not call in lockstep
        while True:
            started = time.monotonic()
            try:
                reader, writer = await self._connect(state)
                try:
                    peer = await self._exchange(reader, writer)
                finally:
                    writer.close()
                state.ok += 1
                self._logged(state, True, peer)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self._failed(state, exc)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, interval * random.uniform(0.9, 1.1) - elapsed))

    async def _long_lived(self, state: CallState) -> None:
        await self._wait_turn(state)
        while True:
            try:
                reader, writer = await self._connect(state)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self._failed(state, exc)
                await asyncio.sleep(1.0)
                continue
            state.open = True
            opened = time.time()
            try:
                while True:
                    peer = await self._exchange(reader, writer)
                    state.ok += 1
                    self._logged(state, True, peer, opened)
                    await asyncio.sleep(LONG_LIVED_PING)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self._failed(state, exc, opened)
            finally:
                state.open = False
                writer.close()
            await asyncio.sleep(1.0)

    async def _connect(self, state: CallState) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        family = FAMILIES[str(state.spec.get("family", "any"))]
        state.last_addr = None
        infos = await loop.getaddrinfo(
            state.spec["to"], state.spec["port"], family=family, type=socket.SOCK_STREAM
        )
        error: Exception = OSError(f"no addresses for {state.spec['to']}")
        for _family, _type, _proto, _name, sockaddr in infos:
            state.last_addr = str(sockaddr[0])
            try:
                connection = asyncio.open_connection(str(sockaddr[0]), int(sockaddr[1]))
                reader, writer = await asyncio.wait_for(connection, CONNECT_TIMEOUT)
            except (TimeoutError, OSError) as exc:
                error = exc
                continue
            state.last_peer = str(sockaddr[0])
            return reader, writer
        raise error

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Ping; the server's answer (``pong <who>``)."""
        writer.write(f"ping {self.pod}\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT)
        if not answer.startswith(b"pong"):
            raise ConnectionError("the server closed without answering")
        return answer.decode(errors="replace").strip()

    def _failed(self, state: CallState, exc: BaseException, opened: float | None = None) -> None:
        state.failed += 1
        state.last_error = f"{type(exc).__name__}: {exc}"
        self._logged(state, False, None, opened, state.last_error)

    def _logged(
        self,
        state: CallState,
        ok: bool,
        peer: str | None,
        opened: float | None = None,
        error: str | None = None,
    ) -> None:
        if self.log is not None:
            self.log.record(state, ok, peer, opened, error)

    async def _status_loop(self) -> None:
        while True:
            self._write_status()
            await asyncio.sleep(0.5)

    def _write_status(self) -> None:
        path = self.spec.get("status")
        if not path:
            return
        document = {
            "pod": self.pod,
            "pid": os.getpid(),
            "ts": time.time(),
            "listening": self.listening,
            "released": self.released.is_set(),
            "calls": [state.report() for state in self.calls],
        }
        temporary = Path(f"{path}.tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(path)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--env":
        spec = json.loads(os.environ[argv[2]])
    elif len(argv) == 2:
        spec = json.loads(Path(argv[1]).read_text())
    else:
        print("usage: python -m lab.caller SPEC.json | --env VARIABLE", file=sys.stderr)
        return 2
    asyncio.run(Caller(spec).run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
