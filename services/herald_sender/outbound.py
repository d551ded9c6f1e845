"""The channel's way out: adapters in failover order, each behind its account's shared rate limit and
its own circuit breaker, and for batching adapters (SendGrid) a micro-batcher in front.

``Outbound.send(msg)`` is what a handler awaits for its one message, whatever is underneath.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from herald_providers.base import OutboundMessage, Provider, ProviderSpec, SendResult
from herald_providers.batcher import MicroBatcher
from herald_providers.breaker import CircuitBreaker, FailoverChain
from herald_providers.fairshare import FairShare
from herald_providers.http import make_session
from herald_providers.limited import RateLimitedProvider
from herald_providers.ratelimit import RateLimiter
from herald_sender.settings import SenderSettings


@dataclass
class Outbound:
    chain: FailoverChain
    session: aiohttp.ClientSession | None
    batcher: MicroBatcher | None = None
    fair: FairShare | None = None  # bulk lane: the primary rate-limited account's share per tenant

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
        specs = settings.provider_specs()
        for spec in specs:
            spec.check(settings)
        needs_http = any(spec.needs_http for spec in specs)
        session = make_session(timeout_s=settings.provider_timeout_s) if needs_http else None
        providers = [_limited(spec, spec.build(settings, session), settings, redis) for spec in specs]
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
    return Outbound(chain, session, batcher, _fair_share(specs, settings, redis))


def _fair_share(
    specs: list[ProviderSpec], settings: SenderSettings, redis: aioredis.Redis
) -> FairShare | None:
    """The bulk lane's fair share of its first rate-limited provider account, when it sends one message
    per token (a batching provider's token is a request of many tenants' messages: not shared out)."""
    if settings.sender_lane != "bulk" or not settings.fair_share:
        return None
    for spec in specs:
        rate, burst = spec.rate_limit(settings)
        if rate > 0:
            if spec.batches:
                return None
            # A tenant may run ahead of its share by what the bulk lane's burst refills in: deliveries
            # told to go then find a token soon, instead of holding the sender's slots in the bucket.
            bulk_burst = burst * (1 - settings.rate_limit_bulk_reserve)
            return FairShare(
                redis,
                account=f"{spec.name}:{spec.account(settings)}",
                rate=rate,
                prefix=settings.redis_prefix,
                tolerance_s=min(0.5, max(0.05, bulk_burst / rate)),
                horizon_s=settings.fair_share_horizon_s,
            )
    return None


def _limited(
    spec: ProviderSpec, provider: Provider, settings: SenderSettings, redis: aioredis.Redis
) -> Provider:
    """``provider`` behind its account's shared rate limit, when it has one."""
    rate, burst = spec.rate_limit(settings)
    if rate <= 0:
        return provider
    limiter = RateLimiter(
        redis,
        account=f"{spec.name}:{spec.account(settings)}",
        rate=rate,
        burst=burst,
        prefix=settings.redis_prefix,
        reserve_fraction=settings.rate_limit_bulk_reserve,
    )
    return RateLimitedProvider(provider, limiter, settings.sender_lane)
