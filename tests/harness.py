"""Run Herald's services in-process (or as real child processes) against the session's infrastructure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from herald_common.kafka import create_topics
from herald_common.lifecycle import Lifecycle
from herald_common.topics import Topics
from herald_dev.infra import Managed, free_port

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class Env:
    """The HERALD_* settings one isolated stack uses."""

    bootstrap: str
    redis_url: str
    prefix: str
    smtp_port: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "kafka_topic_prefix": self.prefix,
            "redis_url": self.redis_url,
            "redis_prefix": self.prefix,
            "health_port": 0,
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 500,
            "drain_timeout_s": 10.0,
        }
        base.update(overrides)
        return base

    def environ(self, **overrides: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        for k, v in {
            **self.settings(),
            "smtp_port": self.smtp_port,
            "log_format": "json",
            **overrides,
        }.items():
            env[f"HERALD_{k.upper()}"] = str(v)
        env.update(self.extra)
        return env

    async def create_topics(self, partitions: int = 4) -> None:
        await create_topics(self.bootstrap, Topics(self.prefix).all(), partitions)


@contextlib.asynccontextmanager
async def running(
    *services: tuple[Callable[[Any, Lifecycle], Awaitable[None]], Any], ready_timeout_s: float = 45.0
) -> AsyncIterator[list[Lifecycle]]:
    """Run services' ``serve`` functions as tasks, all started at once, until the block exits; then
    drain them as SIGTERM would."""
    lifecycles = [Lifecycle() for _ in services]
    tasks = [
        asyncio.create_task(serve(settings, lc))
        for (serve, settings), lc in zip(services, lifecycles, strict=True)
    ]
    try:
        deadline = time.monotonic() + ready_timeout_s
        for task, lc in zip(tasks, lifecycles, strict=True):
            while not all((await lc.readiness()).values()):
                if task.done():
                    task.result()
                    raise RuntimeError("service stopped during start-up")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready: {await lc.readiness()}")
                await asyncio.sleep(0.05)
        yield lifecycles
    finally:
        for lc in lifecycles:
            lc.request_stop("test done")
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)


def herald_process(name: str, args: list[str], env: dict[str, str], log: Path) -> Managed:
    return Managed(name, [sys.executable, "-m", "herald_cli", *args], env=env, log=log).start()


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 30.0, interval_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)


class Api:
    """A small client for the gateway used by tests and the benchmark."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str | None = None) -> None:
        self.http, self.base, self.token = http, base, token

    def _headers(self, token: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        tok = token if token is not None else self.token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        return headers

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, json=json, data=data, headers=self._headers(token, headers)
        ) as resp:
            body = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            parsed = await resp.json(content_type=None) if body and "json" in ctype else body
            return resp.status, parsed

    async def new_tenant(self, name: str = "Cinema") -> str:
        status, tenant = await self.call("POST", "/admin/v1/tenants", {"name": name}, token=ADMIN_TOKEN)
        assert status == 201, tenant
        status, key = await self.call(
            "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", {"name": "t"}, token=ADMIN_TOKEN
        )
        assert status == 201, key
        return str(key["api_key"])


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every record currently in ``topic`` (all partitions, from the beginning), without a group.

    The end of each partition is the high-water mark the fetch responses report (the broker's
    ListOffsets answer is not relied on)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            highs = {tp: consumer.highwater(tp) for tp in tps}
            if all(h is not None for h in highs.values()) and all(
                [await consumer.position(tp) >= h for tp, h in highs.items() if h is not None]
            ):
                break
    finally:
        await consumer.stop()
    return records
