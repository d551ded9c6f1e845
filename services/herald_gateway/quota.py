"""Per-tenant intake rate limits: every tenant gets a token bucket in Redis shared by every gateway
replica (the same limiter the senders use for providers): its own ``rate_limit_per_s`` and
``rate_limit_burst``, else the gateway's default (``HERALD_TENANT_DEFAULT_RATE_PER_S`` and ``_BURST``;
a default rate of 0 turns the default off). A notification costs one token; bulk-lane traffic only
takes what leaves 20 % of the burst for the transactional lane, so a tenant's campaign never blocks its
own booking confirmations. Over the limit → 429 with Retry-After."""

from __future__ import annotations

import math

from aiohttp import web

from herald_common.schemas import Tenant
from herald_gateway.context import KEYS, REDIS, SETTINGS, STORE, TENANT_CACHE
from herald_gateway.problems import ProblemError
from herald_providers.ratelimit import Lane, RateLimiter

DEFAULT_BURST = 1000
# One limiter per tenant and limit, kept for the process's life (a handful of tenants set limits).
LIMITERS = web.AppKey("tenant_limiters", dict[tuple[str, float, int], RateLimiter])


def add_to(app: web.Application) -> None:
    app[LIMITERS] = {}


async def _tenant(app: web.Application, tenant_id: str) -> Tenant | None:
    return await app[TENANT_CACHE].get_or_load(tenant_id, lambda: app[STORE].get_tenant(tenant_id))


def _limiter(app: web.Application, tenant_id: str, rate: float, burst: int) -> RateLimiter:
    """The tenant's limiter for this rate and burst, built (and its script registered) once; a changed
    limit gets a new one, and the old one is dropped."""
    limiters = app[LIMITERS]
    limiter = limiters.get((tenant_id, rate, burst))
    if limiter is None:
        for stale in [k for k in limiters if k[0] == tenant_id]:
            del limiters[stale]
        limiter = RateLimiter(
            app[REDIS], account=f"tenant:{tenant_id}", rate=rate, burst=burst, prefix=app[KEYS].prefix
        )
        limiters[(tenant_id, rate, burst)] = limiter
    return limiter


async def take(app: web.Application, tenant_id: str, n: int, lane: Lane) -> None:
    tenant, settings = await _tenant(app, tenant_id), app[SETTINGS]
    if tenant is not None and tenant.rate_limit_per_s:
        rate = tenant.rate_limit_per_s
        burst = tenant.rate_limit_burst or max(DEFAULT_BURST, math.ceil(rate))
    else:
        rate, burst = settings.tenant_default_rate_per_s, settings.tenant_default_burst
    if rate <= 0:
        return
    limiter = _limiter(app, tenant_id, rate, burst)
    floor = limiter.reserve if lane == "bulk" else 0
    if n > burst - floor:
        raise ProblemError(
            429,
            f"{n} notifications at once exceed this tenant's burst of {burst - floor:g}; "
            "send smaller batches",
            headers={"Retry-After": "1"},
        )
    wait = await limiter.acquire(n, lane)
    if wait > 0:
        raise ProblemError(
            429,
            f"over this tenant's limit of {rate:g} notifications/s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
