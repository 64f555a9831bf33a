"""A loopback TCP relay a test can cut: a client behind it loses its server at a moment
the test chooses, while everyone else still reaches the server directly.

:meth:`Relay.cut` closes every relayed connection and stops listening (new
connections are refused, as from a server that is down); :meth:`Relay.stall`
is a partition: connections stay open and new ones are accepted, but no byte
passes either way (a request waits for its timeout, as when packets are
dropped); :meth:`Relay.mend` ends either, and what stalled flows on, as TCP
retransmits after a partition heals. Bytes pass unchanged, so TLS runs end to
end between the client and the server.
"""

from __future__ import annotations

import asyncio
import contextlib

from devtools.process import free_port


class Relay:
    """``127.0.0.1:port`` relayed to ``127.0.0.1:target``, until cut."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.connections = 0
        """Connections relayed so far."""
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def mend(self) -> None:
        """Listen (again), and let bytes flow."""
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    def stall(self) -> None:
        """Hold every byte, both ways, on every connection, old and new, until mended."""
        self._flowing.clear()

    async def cut(self) -> None:
        """Refuse new connections and close every open one."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        pipes, self._pipes = self._pipes, set()
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    async def __aenter__(self) -> Relay:
        await self.mend()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cut()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._server is None:
            writer.close()
            return
        self.connections += 1
        self._pipes.add(task)
        try:
            await self._flowing.wait()  # a connection made during a partition waits
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:
            writer.close()
            self._pipes.discard(task)
            return
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        finally:
            for end in (writer, upstream_writer):
                end.close()
            self._pipes.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # what arrived as the partition began waits too
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
