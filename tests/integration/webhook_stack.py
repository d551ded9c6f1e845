"""An isolated stack for webhook tests: gateway (loopback allow-listed as ``localhost``), transactional
router, email sender on a real SMTP server, tracker, scheduler, campaigns and the webhooks service, plus local
webhook receivers that verify every delivery with the ``standardwebhooks`` library."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from herald_campaigns.main import serve as serve_campaigns
from herald_campaigns.settings import CampaignsSettings
from herald_common.settings import load
from herald_dev.infra import free_port
from herald_dev.peers import start_peer
from herald_dev.peers.webhook_peer import PATH, WebhookReceiver
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_scheduler.main import serve as serve_scheduler
from herald_scheduler.settings import SchedulerSettings
from herald_sender.main import serve as serve_sender
from herald_sender.settings import SenderSettings
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from herald_webhooks.main import serve as serve_webhooks
from herald_webhooks.settings import WebhooksSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, running

ALLOW = {"webhook_allow_hosts": "localhost"}


@dataclass
class HookStack:
    env: Env
    api: Api
    smtp: SmtpCapture
    runners: list[web.AppRunner] = field(default_factory=list)

    async def receiver(self, *secrets: str) -> tuple[WebhookReceiver, str]:
        """A new receiver holding ``secrets``; its URL (through the allow-listed ``localhost``)."""
        receiver = WebhookReceiver(*secrets)
        runner, base = await start_peer(receiver.app())
        self.runners.append(runner)
        return receiver, base.replace("127.0.0.1", "localhost") + PATH

    async def send(self, to: str) -> str:
        body = {"to": {"email": to}, "content": {"email": {"subject": "Your seat", "text": "F7"}}}
        status, doc = await self.api.call("POST", "/v1/notifications", body)
        assert status == 202, doc
        return str(doc["id"])


@contextlib.asynccontextmanager
async def webhook_stack(infra: Infra, tmp: Path, **webhook_settings: Any) -> AsyncIterator[HookStack]:
    capture = SmtpCapture()
    peer = SmtpPeer(free_port(), capture).start()
    env = Env(infra.bootstrap, infra.redis_url, unique("wh"), smtp_port=peer.port)
    await env.create_topics(partitions=2)
    http_port = free_port()
    hooks = {
        "webhook_retry_base_delay_s": 0.2,
        "webhook_retry_max_delay_s": 1.0,
        "webhook_timeout_s": 3.0,
        **ALLOW,
        **webhook_settings,
    }
    services = [
        (
            serve_gateway,
            load(
                GatewaySettings,
                **env.settings(http_port=http_port, admin_token=ADMIN_TOKEN, drain_timeout_s=1.0, **ALLOW),
            ),
        ),
        (serve_router, load(RouterSettings, **env.settings(router_lane="transactional"))),
        (
            serve_sender,
            load(
                SenderSettings,
                **env.settings(sender_channel="email", sender_lane="transactional", smtp_port=peer.port),
            ),
        ),
        (serve_tracker, load(TrackerSettings, **env.settings())),
        (serve_scheduler, load(SchedulerSettings, **env.settings())),
        (serve_webhooks, load(WebhooksSettings, **env.settings(**hooks))),
        (
            serve_campaigns,
            load(
                CampaignsSettings,
                **env.settings(campaigns_poll_interval_s=0.1, campaign_progress_s=0.5),
            ),
        ),
    ]
    stack: HookStack | None = None
    try:
        async with running(*services), aiohttp.ClientSession() as http:
            stack = HookStack(env, Api(http, f"http://127.0.0.1:{http_port}"), capture)
            yield stack
    finally:
        for runner in stack.runners if stack else []:
            await runner.cleanup()
        peer.stop()
