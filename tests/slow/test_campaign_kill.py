"""Campaigns exactly once under SIGKILL: the campaigns service killed mid-fan-out and restarted, and the
bulk email sender killed mid-batch and restarted — every recipient reaches the SMTP peer exactly once and
the campaign completes with counts equal to its audience."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from herald_campaigns.main import serve as serve_campaigns
from herald_campaigns.settings import CampaignsSettings
from herald_common.settings import load
from herald_dev.infra import Managed, free_port, wait_http_ok
from herald_scheduler.main import serve as serve_scheduler
from herald_sender.main import serve as serve_sender
from herald_sender.settings import SenderSettings
from tests.conftest import Infra
from tests.harness import eventually, herald_process, running
from tests.integration.campaign_support import campaign, members, new_campaign, received, upload, wait_state
from tests.integration.channel_support import scheduler_settings
from tests.integration.stack import Stack, email_stack

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(180)]

N = 3000


@contextlib.asynccontextmanager
async def _stack(infra: Infra, tmp: Path, *services: tuple[Any, Any]) -> AsyncIterator[Stack]:
    """Gateway, routers, tracker (and the given services) in-process; no senders: each test adds its own."""
    async with email_stack(infra, tmp, senders=False) as stack:
        async with running((serve_scheduler, scheduler_settings(stack.env)), *services):
            stack.api.token = await stack.api.new_tenant()
            yield stack


def _sender(stack: Stack, lane: str) -> SenderSettings:
    opts = {"sender_channel": "email", "sender_lane": lane, "smtp_port": stack.env.smtp_port}
    return load(SenderSettings, **stack.env.settings(**opts, smtp_pool_size=8, retry_base_delay_s=0.05))


def _process(stack: Stack, name: str, args: list[str], tmp: Path, **settings: Any) -> tuple[Managed, int]:
    health = free_port()
    env = stack.env.environ(health_port=health, **settings)
    return herald_process(name, args, env, tmp / f"{name}.log"), health


async def _campaign_of(stack: Stack, prefix: str, rate: float) -> tuple[str, list[str]]:
    ids = await members(stack, N, prefix=prefix)
    cid = await new_campaign(stack, rate_per_s=rate)
    assert (await upload(stack, cid, ids))["audience"] == N
    status, body = await stack.api.call("POST", f"/v1/campaigns/{cid}:start")
    assert status == 202, body
    return cid, ids


async def _each_exactly_once(stack: Stack, cid: str, prefix: str, ids: list[str], health: int) -> None:
    try:
        await eventually(lambda: len(received(stack, prefix)) >= N, timeout_s=90, interval_s=0.2)
    except AssertionError:
        doc = await campaign(stack, cid)
        async with stack.api.http.get(f"http://127.0.0.1:{health}/metrics") as resp:
            found = [line for line in (await resp.text()).splitlines() if line.startswith("herald_deliver")]
        lost = N - len(received(stack, prefix))
        raise AssertionError(f"{lost} never reached the provider: {doc}\n" + "\n".join(found)) from None
    await asyncio.sleep(1.0)  # anything sent twice would arrive now
    got = received(stack, prefix)
    assert sorted(got) == ids
    assert [cid for cid, n in got.items() if n != 1] == [], "sent more than once"
    doc = await wait_state(stack, cid, "completed", timeout_s=30)
    assert doc["audience"] == doc["fanned_out"] == doc["counts"]["sent"] == N, doc


async def test_campaigns_service_sigkilled_mid_fanout_resumes_each_recipient_exactly_once(
    infra: Infra, tmp_path: Path
) -> None:
    async with _stack(infra, tmp_path) as stack:
        async with running((serve_sender, _sender(stack, "bulk"))):
            lease = {"campaigns_lease_s": 2.0, "campaigns_poll_interval_s": 0.1}
            first, health = _process(stack, "campaigns-1", ["campaigns"], tmp_path, **lease)
            try:
                await wait_http_ok(f"http://127.0.0.1:{health}/readyz")
                cid, ids = await _campaign_of(stack, "k", rate=600)
                fanned = 0

                async def mid_way() -> bool:
                    nonlocal fanned
                    fanned = (await campaign(stack, cid))["fanned_out"]
                    return fanned >= N // 3

                await eventually(mid_way, timeout_s=60, interval_s=0.02)
            finally:
                first.kill()
            at_kill = (await campaign(stack, cid))["fanned_out"]
            assert at_kill < N, "the kill must land mid-fan-out"
            second, health = _process(stack, "campaigns-2", ["campaigns"], tmp_path, **lease)
            try:
                await _each_exactly_once(stack, cid, "k", ids, health)
            finally:
                assert second.stop() == 0, (tmp_path / "campaigns-2.log").read_text()[-3000:]


async def test_bulk_sender_sigkilled_mid_batch_sends_each_recipient_exactly_once(
    infra: Infra, tmp_path: Path
) -> None:
    async with _stack(infra, tmp_path) as stack:
        fanout = load(CampaignsSettings, **stack.env.settings(campaigns_poll_interval_s=0.1))
        async with running((serve_campaigns, fanout)):
            sender = {
                "sender_channel": "email",
                "sender_lane": "bulk",
                "smtp_pool_size": 8,
                "consumer_concurrency": 64,
                "consumer_max_batch": 1000,
            }
            # The first sender commits nothing before it dies: every record it took comes back.
            first, health = _process(
                stack, "sender-1", ["sender"], tmp_path, consumer_commit_interval_s=120, **sender
            )
            await wait_http_ok(f"http://127.0.0.1:{health}/readyz")
            cid, ids = await _campaign_of(stack, "b", rate=2000)
            try:
                await eventually(lambda: sum(received(stack, "b").values()) >= N // 4, timeout_s=60)
                # Hold every SMTP session at RCPT: deliveries in flight are mid-conversation, nothing more
                # is accepted, and the ledger catches up with what was accepted before the kill.
                stack.smtp.paused = True
                await asyncio.sleep(0.5)
                before = sum(received(stack, "b").values())
                assert before < N, "the kill must land mid-way"
            finally:
                first.kill()
                stack.smtp.paused = False
            second, health = _process(stack, "sender-2", ["sender"], tmp_path, **sender)
            try:
                await _each_exactly_once(stack, cid, "b", ids, health)
            finally:
                assert second.stop() == 0, (tmp_path / "sender-2.log").read_text()[-3000:]
