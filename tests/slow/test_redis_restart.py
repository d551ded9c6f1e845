"""Redis restarting mid-load: consumers wait the outage out (nothing dead-lettered, nothing lost) and
every message is delivered exactly once after Redis is back (AOF keeps the ledger across the restart)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from herald_common.settings import load
from herald_dev.infra import free_port, start_valkey
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_sender.main import serve as serve_sender
from herald_sender.settings import SenderSettings
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, eventually, read_topic, running

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
    services = [
        (serve_gateway, load(GatewaySettings, **env.settings(http_port=http_port, admin_token=ADMIN_TOKEN))),
        (serve_router, load(RouterSettings, **env.settings(router_lane="transactional"))),
        (serve_tracker, load(TrackerSettings, **env.settings())),
        (
            serve_sender,
            load(
                SenderSettings, **env.settings(sender_channel="email", smtp_port=peer.port, smtp_pool_size=4)
            ),
        ),
    ]
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
