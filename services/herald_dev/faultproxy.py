"""A TCP fault proxy for chaos tests: sits between services and Redis or Kafka and, on command, adds
latency to every chunk in both directions or drops every open connection (both sides closed at once,
mid-stream, as a network partition or a load balancer reset would).

    proxy = FaultProxy(target_port=6379)   # listens on a free loopback port
    await proxy.start()
    proxy.latency_s = 0.05                 # from now on, each chunk waits 50 ms each way
    proxy.drop()                           # every connection open now is cut
    proxy.refusing = True                  # new connections are accepted and cut at once
    await proxy.stop()

It runs on the caller's event loop (a test's), so the services under test are separate processes or
tasks talking to it over loopback. Counters (``accepted``, ``dropped``) let a test check a fault hit.
"""

from __future__ import annotations

import asyncio
import contextlib

from herald_dev.infra import free_port

_CHUNK = 64 * 1024


class FaultProxy:
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.latency_s = 0.0
        self.refusing = False
        self.accepted = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop()
        if self._links:
            await asyncio.gather(*self._links, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def drop(self) -> int:
        """Cut every open connection, both sides; returns how many."""
        links = list(self._links)
        for link in links:
            link.cancel()
        self.dropped += len(links)
        return len(links)

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            _abort(client_w)
            return
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pipe(client_r, upstream_w), self._pipe(upstream_r, client_w))
        except (OSError, asyncio.CancelledError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(task)
            _abort(client_w)
            if upstream_w is not None:
                _abort(upstream_w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                break
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            writer.write(chunk)
            await writer.drain()
        # one side closed: close the other, so the peer sees the end of the stream too
        raise ConnectionResetError("closed by one side")


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once, without waiting for buffered data (a reset rather than a polite close)."""
    with contextlib.suppress(Exception):
        writer.transport.abort()
