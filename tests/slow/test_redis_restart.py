"""Redis restarting mid-load: consumers wait the outage out (nothing dead-lettered, nothing lost) and
every message is delivered exactly once after Redis is back (AOF keeps the ledger across the restart)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from herald_dev.infra import free_port, start_valkey
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from tests.conftest import Infra, unique
from tests.harness import Api, Env, eventually, read_topic, running
from tests.integration.stack import transactional_email_services

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(180)]

N = 400


async def test_redis_restart_mid_load_loses_nothing(infra: Infra, tmp_path: Path) -> None:
    port = free_port()
    redis = start_valkey(port, tmp_path / "valkey", appendonly=True, log=tmp_path / "valkey.log")
    capture = SmtpCapture(data_delay_s=0.005)
    peer = SmtpPeer(free_port(), capture).start()
    env = Env(infra.bootstrap, f"redis://127.0.0.1:{port}/0", unique("rr"), smtp_port=peer.port)
    await env.create_topics(partitions=4)
    http_port = free_port()
    services = transactional_email_services(env, http_port, peer.port)
    try:
        async with running(*services) as lifecycles, aiohttp.ClientSession() as http:
            api = Api(http, f"http://127.0.0.1:{http_port}")
            api.token = await api.new_tenant()
            items = [
                {"to": {"email": f"r{i}@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}}
                for i in range(N)
            ]
            for start in range(0, N, 200):
                status, body = await api.call(
                    "POST", "/v1/notifications:batch", {"notifications": items[start : start + 200]}
                )
                assert status == 202, body
            await eventually(lambda: len(capture.snapshot()) >= 80, timeout_s=30)
            redis.stop()  # SIGTERM: Valkey flushes its AOF and exits
            await asyncio.sleep(0.5)
            assert not all((await lifecycles[3].readiness()).values()), (
                "readiness must fail while Redis is down"
            )
            # The API says so too, with a problem document rather than a 500.
            status, body = await api.call("POST", "/v1/notifications", items[0])
            assert status in (503, 202), body  # 202 only if the key was still cached and Kafka took it
            await asyncio.sleep(3)
            redis = start_valkey(port, tmp_path / "valkey", appendonly=True, log=tmp_path / "valkey.log")
            await eventually(lambda: len({m.rcpt_to[0] for m in capture.snapshot()}) >= N, timeout_s=90)
            await asyncio.sleep(1.0)
            got = sorted(m.rcpt_to[0] for m in capture.snapshot())
            expected = sorted(f"r{i}@example.com" for i in range(N))
            if status == 202:
                expected = sorted([*expected, "r0@example.com"])
            assert got == expected, f"{len(got)} received for {len(expected)} expected"
            assert await read_topic(env.bootstrap, f"{env.prefix}.deadletter.sender") == []
            assert await read_topic(env.bootstrap, f"{env.prefix}.deadletter.router") == []
    finally:
        peer.stop()
        redis.stop()
