"""A sender killed with SIGKILL mid-batch and restarted loses nothing and sends nothing twice."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from herald_common.settings import load
from herald_dev.infra import free_port, wait_http_ok
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, eventually, herald_process, running

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(120)]

N = 300


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_sigkill_mid_batch_loses_nothing_and_sends_nothing_twice(infra: Infra, tmp_path: Path) -> None:
    capture = SmtpCapture()
    peer = SmtpPeer(free_port(), capture).start()
    env = Env(infra.bootstrap, infra.redis_url, unique("kill"), smtp_port=peer.port)
    await env.create_topics(partitions=4)
    http_port = free_port()
    services = [
        (serve_gateway, load(GatewaySettings, **env.settings(http_port=http_port, admin_token=ADMIN_TOKEN))),
        (serve_router, load(RouterSettings, **env.settings(router_lane="transactional"))),
        (serve_tracker, load(TrackerSettings, **env.settings())),
    ]
    sender_env = env.environ(
        sender_channel="email",
        sender_lane="transactional",
        smtp_pool_size=8,
        consumer_concurrency=64,
        consumer_max_batch=1000,
    )
    try:
        async with running(*services), aiohttp.ClientSession() as http:
            api = Api(http, f"http://127.0.0.1:{http_port}")
            api.token = await api.new_tenant()
            items = [
                {
                    "to": {"email": f"m{i}@example.com"},
                    "content": {"email": {"subject": f"#{i}", "text": "x"}},
                }
                for i in range(N)
            ]
            ids: list[str] = []
            for start in range(0, N, 100):
                status, body = await api.call(
                    "POST", "/v1/notifications:batch", {"notifications": items[start : start + 100]}
                )
                assert status == 202, body
                ids += [n["id"] for n in body["notifications"]]

            first_health = free_port()
            # The first sender commits nothing before it dies, so all N records come back to the second.
            first = herald_process(
                "sender-1",
                ["sender"],
                {
                    **sender_env,
                    "HERALD_HEALTH_PORT": str(first_health),
                    "HERALD_CONSUMER_COMMIT_INTERVAL_S": "120",
                },
                tmp_path / "sender-1.log",
            )
            await eventually(lambda: len(capture.snapshot()) >= 60, timeout_s=40)
            # Hold every SMTP session at RCPT: in-flight deliveries are mid-conversation, nothing more is
            # accepted, and the ledger catches up with what was accepted before the kill.
            capture.paused = True
            await asyncio.sleep(0.5)
            sent_before = len(capture.snapshot())
            assert sent_before < N, "the kill must land mid-way"
            first.kill()
            capture.paused = False

            health = free_port()
            second = herald_process(
                "sender-2",
                ["sender"],
                {**sender_env, "HERALD_HEALTH_PORT": str(health)},
                tmp_path / "sender-2.log",
            )
            try:
                await wait_http_ok(f"http://127.0.0.1:{health}/healthz")
                await eventually(lambda: len({m.rcpt_to[0] for m in capture.snapshot()}) >= N, timeout_s=60)
                await asyncio.sleep(1.0)  # anything sent twice would arrive now
                received = [m.rcpt_to[0] for m in capture.snapshot()]
                assert sorted(received) == sorted(f"m{i}@example.com" for i in range(N)), "lost or duplicated"
                async with http.get(f"http://127.0.0.1:{health}/metrics") as resp:
                    text = await resp.text()
                # The uncommitted batch came back to the new sender, which skipped what was already sent.
                assert _metric(text, "herald_deliveries_total", status="skipped_duplicate") == sent_before
                assert _metric(text, "herald_deliveries_total", status="sent") == N - sent_before

                async def all_sent() -> bool:
                    for nid in ids[:: max(1, N // 20)]:
                        _, doc = await api.call("GET", f"/v1/notifications/{nid}")
                        if doc["status"] != "sent":
                            return False
                    return True

                await eventually(all_sent, timeout_s=20)
            finally:
                assert second.stop() == 0, (tmp_path / "sender-2.log").read_text()[-3000:]
            log = (tmp_path / "sender-2.log").read_text()
            assert not re.search(r"@example\.com", log.replace("***@example.com", "")), "raw address in logs"
    finally:
        peer.stop()
