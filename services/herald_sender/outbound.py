"""The channel's way out: adapters in failover order, each behind its account's shared rate limit and
its own circuit breaker, and for batching adapters (SendGrid) a micro-batcher in front.

``Outbound.send(msg)`` is what a handler awaits for its one message, whatever is underneath.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from herald_providers.base import OutboundMessage, Provider, SendResult
from herald_providers.batcher import MicroBatcher
from herald_providers.breaker import CircuitBreaker, FailoverChain
from herald_providers.config import build_http_provider
from herald_providers.http import make_session
from herald_providers.limited import RateLimitedProvider
from herald_providers.ratelimit import RateLimiter
from herald_providers.smtp import SmtpConfig, SmtpProvider
from herald_sender.settings import SenderSettings


@dataclass
class Outbound:
    chain: FailoverChain
    session: aiohttp.ClientSession | None
    batcher: MicroBatcher | None = None

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.chain.providers)

    async def start(self) -> None:
        await self.chain.start()

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        await self.chain.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, msg: OutboundMessage) -> SendResult:
        if self.batcher is not None:
            return await self.batcher.submit(msg)
        return await self.chain.send(msg)


def build_outbound(settings: SenderSettings, redis: aioredis.Redis) -> Outbound:
    """Build the channel's providers from settings; exits with the missing ``HERALD_*`` named."""
    try:
        names = settings.providers()
        needs_http = any(n != "smtp" for n in names)
        session = make_session(timeout_s=settings.provider_timeout_s) if needs_http else None
        providers: list[Provider] = []
        for name in names:
            provider = _adapter(name, settings, session)
            rate, burst = settings.rate_limit(name)
            if rate > 0:
                limiter = RateLimiter(
                    redis,
                    account=f"{name}:{_account(name, settings)}",
                    rate=rate,
                    burst=burst,
                    prefix=settings.redis_prefix,
                    reserve_fraction=settings.rate_limit_bulk_reserve,
                )
                provider = RateLimitedProvider(provider, limiter, settings.sender_lane)
            providers.append(provider)
    except ValueError as exc:
        raise SystemExit(f"sender for {settings.sender_channel}: {exc}") from None
    breakers = {
        p.name: CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold, cooldown_s=settings.breaker_cooldown_s
        )
        for p in providers
    }
    chain = FailoverChain(providers, breakers)
    batcher = None
    if chain.supports_batch:
        batcher = MicroBatcher(
            chain.send_batch,
            max_size=settings.sendgrid_batch_max,
            linger_s=settings.sendgrid_batch_linger_ms / 1000,
        )
    return Outbound(chain, session, batcher)


def _adapter(name: str, settings: SenderSettings, session: aiohttp.ClientSession | None) -> Provider:
    if name == "smtp":
        return SmtpProvider(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                starttls=settings.smtp_starttls,
                use_tls=settings.smtp_use_tls,
                pool_size=settings.smtp_pool_size,
                timeout_s=settings.smtp_timeout_s,
                default_from=settings.email_from,
                default_from_name=settings.email_from_name,
            )
        )
    assert session is not None
    return build_http_provider(name, settings, session)


def _account(name: str, settings: SenderSettings) -> str:
    """Which provider account a limit belongs to (never the secret itself)."""
    if name == "twilio":
        return settings.twilio_account_sid or "default"
    if name == "fcm":
        return settings.fcm_project_id or str(settings.fcm_credentials_file or "default")
    if name == "sendgrid" and settings.sendgrid_api_key is not None:
        return hashlib.sha256(settings.sendgrid_api_key.get_secret_value().encode()).hexdigest()[:16]
    if name == "smtp":
        return f"{settings.smtp_host}:{settings.smtp_port}"
    return "default"
