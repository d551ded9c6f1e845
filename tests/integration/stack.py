"""An isolated in-process stack (gateway, routers, email senders, tracker) on the real broker, Redis and
an aiosmtpd SMTP server, with its own topic and key prefix."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from herald_common.settings import load
from herald_dev.infra import free_port
from herald_dev.outbox import Outbox
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
from tests.harness import ADMIN_TOKEN, Api, Env, eventually, running


@dataclass
class Stack:
    env: Env
    api: Api
    smtp: SmtpCapture
    base_url: str


@contextlib.asynccontextmanager
async def email_stack(
    infra: Infra,
    tmp: Path,
    *,
    senders: bool = True,
    router_overrides: dict[str, object] | None = None,
    **sender_overrides: object,
) -> AsyncIterator[Stack]:
    capture = SmtpCapture(outbox=Outbox(tmp / "outbox"))
    peer = SmtpPeer(free_port(), capture).start()
    env = Env(infra.bootstrap, infra.redis_url, unique("e2e"), smtp_port=peer.port)
    await env.create_topics(partitions=4)
    http_port = free_port()
    gw = load(
        GatewaySettings, **env.settings(http_port=http_port, admin_token=ADMIN_TOKEN, drain_timeout_s=1.0)
    )
    links = f"http://127.0.0.1:{http_port}"  # unsubscribe links in marketing email point at this gateway
    services = [
        (serve_gateway, gw),
        (
            serve_router,
            load(
                RouterSettings,
                **env.settings(
                    router_lane="transactional", public_base_url=links, **(router_overrides or {})
                ),
            ),
        ),
        (serve_router, load(RouterSettings, **env.settings(router_lane="bulk", public_base_url=links))),
        (serve_tracker, load(TrackerSettings, **env.settings())),
    ]
    if senders:
        for lane in ("transactional", "bulk"):
            opts = {
                "sender_channel": "email",
                "sender_lane": lane,
                "smtp_port": peer.port,
                "retry_base_delay_s": 0.05,
                **sender_overrides,
            }
            services.append((serve_sender, load(SenderSettings, **env.settings(**opts))))
    try:
        async with running(*services), aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{http_port}"
            yield Stack(env, Api(http, base), capture, base)
    finally:
        peer.stop()


def transactional_email_services(env: Env, http_port: int, smtp_port: int) -> list[tuple[Any, Any]]:
    """The fewest services that take an email from the API to an SMTP server: gateway, transactional
    router, tracker, email sender (the slow chaos tests put a fault in front of Redis or Kafka)."""
    return [
        (serve_gateway, load(GatewaySettings, **env.settings(http_port=http_port, admin_token=ADMIN_TOKEN))),
        (serve_router, load(RouterSettings, **env.settings(router_lane="transactional"))),
        (serve_tracker, load(TrackerSettings, **env.settings())),
        (
            serve_sender,
            load(
                SenderSettings, **env.settings(sender_channel="email", smtp_port=smtp_port, smtp_pool_size=4)
            ),
        ),
    ]


async def wait_status(stack: Stack, nid: str, want: str, token: str | None = None) -> dict:
    """Wait until notification ``nid`` has status ``want``; its document."""
    doc: dict = {}

    async def check() -> bool:
        nonlocal doc
        status, doc = await stack.api.call("GET", f"/v1/notifications/{nid}", token=token)
        return status == 200 and doc["status"] == want

    try:
        await eventually(check, timeout_s=20)
    except AssertionError:
        raise AssertionError(f"status never became {want}: {doc}") from None
    return doc
