"""The gateway as a real process facing hostile clients: read deadlines for headers and bodies, JSON
log lines whatever aiohttp itself logs, and /metrics kept off the public API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import pytest_asyncio

from herald_dev.infra import Managed, free_port, wait_http_ok
from herald_gateway.deadlines import LINGER_S
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Env, herald_process

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0


@dataclass
class Gateway:
    port: int
    health_port: int
    log: Path
    proc: Managed


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    env = Env(infra.bootstrap, infra.redis_url, unique("gwh"))
    await env.create_topics(partitions=2)
    port, health_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("gwh") / "gateway.log"
    environ = env.environ(
        http_port=port,
        health_port=health_port,
        admin_token=ADMIN_TOKEN,
        http_header_timeout_s=HEADER_TIMEOUT_S,
        http_body_timeout_s=BODY_TIMEOUT_S,
        drain_timeout_s=1,
    )
    proc = herald_process("gateway", ["gateway"], environ, log)
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/readyz")
        yield Gateway(port, health_port, log, proc)
    finally:
        proc.stop()


async def _closed_after(reader: asyncio.StreamReader, started: float, limit_s: float) -> tuple[float, bytes]:
    """Seconds from ``started`` until the server closed the connection, and what it sent."""
    data = await asyncio.wait_for(reader.read(), timeout=limit_s)
    return time.monotonic() - started, data


async def test_a_client_trickling_header_lines_is_closed_at_the_header_deadline(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    started = time.monotonic()
    writer.write(b"POST /v1/notifications HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for i in range(30):  # a header line every second, never the blank line that ends them
            await asyncio.sleep(1.0)
            writer.write(f"X-Slow-{i}: {i}\r\n".encode())
            await writer.drain()

    task = asyncio.create_task(trickle())
    try:
        elapsed, _ = await _closed_after(reader, started, limit_s=HEADER_TIMEOUT_S + 6)
    finally:
        task.cancel()
        writer.close()
    assert elapsed < HEADER_TIMEOUT_S + 1.5, elapsed


async def test_a_client_trickling_its_body_gets_408_and_is_closed_at_the_body_deadline(
    gateway: Gateway,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"POST /admin/v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
    )
    started = time.monotonic()

    async def trickle() -> None:
        for _ in range(60):
            await asyncio.sleep(0.5)
            writer.write(b" ")
            await writer.drain()

    task = asyncio.create_task(trickle())
    try:
        elapsed, data = await _closed_after(reader, started, limit_s=BODY_TIMEOUT_S + 6)
    finally:
        task.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert elapsed < BODY_TIMEOUT_S + LINGER_S + 1.5, elapsed


async def test_aiohttp_errors_are_json_log_lines_like_everything_else(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    # a malformed header line: aiohttp answers 400 and logs the parser's traceback itself
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBroken header ann@example.com\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert answer.split(b"\r\n", 1)[0].endswith(b"400 Bad Request"), answer[:100]

    def lines() -> list[str]:
        return [line for line in gateway.log.read_text().splitlines() if line.strip()]

    for _ in range(50):
        if any("Error handling request" in line for line in lines()):
            break
        await asyncio.sleep(0.1)
    records = [orjson.loads(line) for line in lines()]  # every line is one JSON object
    [error] = [r for r in records if r.get("logger") == "aiohttp.server"]
    assert error["level"] == "error" and "Traceback" in error["exception"]
    assert "ann@example.com" not in gateway.log.read_text()


async def test_metrics_and_the_admin_api_document_are_not_public(gateway: Gateway) -> None:
    api = f"http://127.0.0.1:{gateway.port}"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/metrics") as resp:
            assert resp.status == 404  # not served on the API port at all
        async with http.get(f"http://127.0.0.1:{gateway.health_port}/metrics") as resp:
            assert resp.status == 200 and "herald_http_requests_total" in await resp.text()
        async with http.get(f"{api}/readyz") as resp:
            assert resp.status == 200  # load balancers still probe the API port
        async with http.get(f"{api}/v1/openapi.json") as resp:
            public = await resp.json()
        assert not [p for p in public["paths"] if p.startswith("/admin/")]
        assert "adminToken" not in public["components"]["securitySchemes"]
        async with http.get(f"{api}/admin/v1/openapi.json") as resp:
            assert resp.status == 401
        async with http.get(f"{api}/admin/v1/openapi.json", headers=admin) as resp:
            full = await resp.json()
        assert "/admin/v1/tenants" in full["paths"] and "/v1/notifications" in full["paths"]
