"""Helpers for the channel tests: provider peers on loopback, sender/scheduler settings with short
timings, deliveries produced straight onto a delivery topic, and status read back from Redis."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from herald_common.ids import delivery_id, partition_key
from herald_common.redisio import Keys
from herald_common.settings import load
from herald_common.topics import Topics
from herald_common.wire import Delivery
from herald_dev.peers import FcmPeer, SendGridPeer, TwilioPeer, make_test_service_account, start_peer
from herald_gateway.settings import GatewaySettings
from herald_providers.webhooks import generate_signing_key
from herald_scheduler.settings import SchedulerSettings
from herald_sender.settings import SenderSettings
from tests.harness import ADMIN_TOKEN, Env, eventually

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-test-auth-token"
SENDGRID_KEY = "SG.test-key"
SENDER_NUMBER = "+14155550100"

# Short timings so retries, leases and breakers play out in a second or two.
FAST_SENDER = {
    "retry_base_delay_s": 0.05,
    "retry_max_delay_s": 0.3,
    "retry_inplace_max_s": 0.0,
    "provider_timeout_s": 0.5,
    "breaker_cooldown_s": 0.5,
}
FAST_SCHEDULER = {"scheduler_poll_interval_s": 0.02, "scheduler_lease_s": 2.0}


@dataclass
class Peers:
    twilio: TwilioPeer
    fcm: FcmPeer
    sendgrid: SendGridPeer
    urls: dict[str, str]
    fcm_credentials: Path
    sendgrid_public_key: str
    runners: list[web.AppRunner] = field(default_factory=list)

    def provider_settings(self) -> dict[str, Any]:
        return {
            "twilio_base_url": self.urls["twilio"],
            "twilio_account_sid": TWILIO_SID,
            "twilio_auth_token": TWILIO_TOKEN,
            "twilio_from": SENDER_NUMBER,
            "fcm_base_url": self.urls["fcm"],
            "fcm_token_url": self.urls["fcm"] + "/token",
            "fcm_credentials_file": str(self.fcm_credentials),
            "sendgrid_base_url": self.urls["sendgrid"],
            "sendgrid_api_key": SENDGRID_KEY,
        }


@contextlib.asynccontextmanager
async def provider_peers(tmp: Path, *, webhook_base: str | None = None) -> AsyncIterator[Peers]:
    """Twilio, FCM and SendGrid peers on free ports; receipts go to ``webhook_base`` when given."""
    account = make_test_service_account(tmp / "fcm-sa.json")
    signing_key, public_key = generate_signing_key()
    peers = Peers(
        twilio=TwilioPeer(TWILIO_SID, TWILIO_TOKEN, callback_delay_s=0.02),
        fcm=FcmPeer([account]),
        sendgrid=SendGridPeer(
            SENDGRID_KEY,
            signing_key=signing_key,
            event_webhook_url=f"{webhook_base}/v1/receipts/sendgrid" if webhook_base else None,
            event_delay_s=0.02,
        ),
        urls={},
        fcm_credentials=tmp / "fcm-sa.json",
        sendgrid_public_key=public_key,
    )
    try:
        for name, peer in (("twilio", peers.twilio), ("fcm", peers.fcm), ("sendgrid", peers.sendgrid)):
            runner, url = await start_peer(peer.app())
            peers.runners.append(runner)
            peers.urls[name] = url
        yield peers
    finally:
        for runner in peers.runners:
            await runner.cleanup()


def sender_settings(env: Env, peers: Peers | None, channel: str, **overrides: Any) -> SenderSettings:
    options: dict[str, Any] = {
        **(peers.provider_settings() if peers else {}),
        **FAST_SENDER,
        "sender_channel": channel,
        "sender_lane": "transactional",
        **overrides,
    }
    return load(SenderSettings, **env.settings(**options))


def receipt_gateway_settings(env: Env, peers: Peers, http_port: int) -> GatewaySettings:
    """A gateway on ``http_port`` that verifies the peers' receipts (SendGrid key, Twilio token) and
    gives its own base URL for callbacks."""
    return load(
        GatewaySettings,
        **env.settings(
            http_port=http_port,
            admin_token=ADMIN_TOKEN,
            drain_timeout_s=1.0,
            sendgrid_webhook_public_key=peers.sendgrid_public_key,
            twilio_auth_token=TWILIO_TOKEN,
            public_base_url=f"http://127.0.0.1:{http_port}",
        ),
    )


def scheduler_settings(env: Env, **overrides: Any) -> SchedulerSettings:
    return load(SchedulerSettings, **env.settings(**{**FAST_SCHEDULER, **overrides}))


def delivery(tenant: str, nid: str, channel: str, to: str, content: dict[str, Any], **extra: Any) -> Delivery:
    return Delivery(
        delivery_id=delivery_id(nid, channel, to),
        notification_id=nid,
        tenant_id=tenant,
        channel=channel,  # type: ignore[arg-type]
        lane="transactional",
        to=to,
        content=content,
        accepted_at=time.time(),
        **extra,
    )


async def produce(env: Env, deliveries: list[Delivery]) -> None:
    """Put deliveries on their topic as the router would (keyed by tenant and recipient)."""
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, acks="all")
    await producer.start()
    try:
        topics = Topics(env.prefix)
        for d in deliveries:
            await producer.send(
                topics.deliveries(d.channel, d.lane),
                orjson.dumps(d.model_dump(exclude_none=True)),
                key=partition_key(d.tenant_id, d.to),
            )
        await producer.flush()
    finally:
        await producer.stop()


async def channel_status(
    redis: aioredis.Redis, env: Env, tenant: str, nid: str, channel: str
) -> dict[str, Any] | None:
    raw = await redis.hget(Keys(env.prefix).notification(tenant, nid), f"c:{channel}")
    return orjson.loads(raw) if raw else None


def phone(i: int) -> str:
    """Distinct valid-looking UK mobile numbers."""
    return f"+4479111{i:05d}"


async def group_settled(env: Env, group: str, members: int, timeout_s: float = 20.0) -> None:
    """Wait until consumer group ``group`` is stable with ``members`` members (all replicas have
    their partitions), so work produced next is shared between them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=env.bootstrap)
    await admin.start()
    try:

        async def settled() -> bool:
            [response] = await admin.describe_consumer_groups([group])
            [(_error, _group, state, _ptype, _protocol, found)] = response.groups
            return bool(state == "Stable" and len(found) == members)

        await eventually(settled, timeout_s=timeout_s, interval_s=0.1)
    finally:
        await admin.close()
