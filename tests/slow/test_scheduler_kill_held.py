"""A scheduler replica SIGKILLed while it releases notifications held for quiet hours: a second replica
releases what the first had claimed once its lease runs out, and every held notification is delivered
exactly once (a request released twice is routed to the same deterministic deliveries, which the
sender's ledger sends once)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from herald_common.delayed import DelayQueue
from herald_common.redisio import Keys
from herald_dev.infra import Managed, free_port, wait_http_ok
from tests.conftest import Infra
from tests.harness import ADMIN_TOKEN, eventually, herald_process
from tests.integration.stack import email_stack

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(180)]

N = 300


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


async def test_scheduler_killed_while_releasing_held_notifications(infra: Infra, tmp_path: Path) -> None:
    async with email_stack(infra, tmp_path) as stack:
        env = stack.env
        redis = aioredis.Redis.from_url(infra.redis_url)
        queue = DelayQueue(redis, Keys(env.prefix))

        def scheduler(name: str) -> tuple[Managed, int]:
            port = free_port()
            opts = {"scheduler_batch": 2, "scheduler_lease_s": 2.0, "scheduler_poll_interval_s": 0.02}
            environ = env.environ(health_port=port, **opts)
            return herald_process(name, ["scheduler"], environ, tmp_path / f"{name}.log"), port

        first, port = scheduler("scheduler-a")
        try:
            await wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
            end = time.time() + 8.0
            window = {"start": _clock(time.time() - 120), "end": _clock(end), "timezone": "UTC"}
            status, tenant = await stack.api.call(
                "POST", "/admin/v1/tenants", {"name": "c", "quiet_hours": window}, token=ADMIN_TOKEN
            )
            assert status == 201, tenant
            _, key = await stack.api.call(
                "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", {}, token=ADMIN_TOKEN
            )
            stack.api.token = key["api_key"]
            items = [
                {
                    "to": {"email": f"held{i}@example.com"},
                    "category": "marketing",
                    "content": {"email": {"subject": "s", "text": "t"}},
                }
                for i in range(N)
            ]
            status, body = await stack.api.call("POST", "/v1/notifications:batch", {"notifications": items})
            assert status == 202, body
            ids = [x["id"] for x in body["notifications"]]

            async def all_held() -> bool:
                return (await queue.pending())[0] == N

            await eventually(all_held, timeout_s=30, interval_s=0.05)
            assert time.time() < int(end), "the window ended before everything was held"

            async def releasing() -> bool:
                due, leased = await queue.pending()
                return leased > 0 or due < N

            await eventually(releasing, timeout_s=20, interval_s=0.002)
            first.kill()  # mid-release: whatever it holds under lease waits for the lease to run out
            assert (await queue.pending())[0] > 0, "the first replica released everything before the kill"
            second, _ = scheduler("scheduler-b")
            try:

                def delivered() -> bool:
                    return len(stack.smtp.snapshot()) >= N

                await eventually(delivered, timeout_s=60, interval_s=0.2)
                await asyncio.sleep(3.0)  # room for a late duplicate to show up
            finally:
                second.stop()
            counts = Counter(m.rcpt_to[0] for m in stack.smtp.snapshot())
            assert sorted(counts) == sorted(f"held{i}@example.com" for i in range(N))
            assert [a for a, n in counts.items() if n > 1] == []
            assert await queue.pending() == (0, 0)
            for nid in ids[:: N // 10]:
                status, doc = await stack.api.call("GET", f"/v1/notifications/{nid}")
                assert doc["status"] == "sent", doc
        finally:
            first.stop()
            await redis.aclose()
