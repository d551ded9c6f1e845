"""A provider behind the shared outbound rate limit of its account.

:class:`RateLimitedProvider` takes tokens from the account's :class:`RateLimiter` (one per HTTP
request: a SendGrid batch of 1,000 recipients is one request) before every call, tells the limiter
when the provider throttled us so every replica slows down, and lets it recover on success. The bulk
lane asks for tokens with ``lane="bulk"``, so it only gets what the transactional reserve leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

from herald_providers.base import (
    OutboundMessage,
    Outcome,
    Provider,
    SendResult,
    TransientError,
    send_many,
    supports_batch,
)
from herald_providers.ratelimit import Lane, RateLimiter


class RateLimitedProvider:
    def __init__(self, inner: Provider, limiter: RateLimiter, lane: Lane = "transactional") -> None:
        self.inner = inner
        self.limiter = limiter
        self.lane = lane
        self.name = inner.name
        self.channel = inner.channel
        self.supports_batch = supports_batch(inner)
        floor = limiter.reserve if lane == "bulk" else 0.0
        self._max_take = max(1, int(limiter.burst - floor))

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def send(self, msg: OutboundMessage) -> SendResult:
        await self._take(1)
        try:
            result = await self.inner.send(msg)
        except TransientError as exc:
            if exc.throttled:
                await self.limiter.on_throttled()
            raise
        await self.limiter.on_success()
        return result

    async def send_batch(self, msgs: Sequence[OutboundMessage]) -> list[Outcome]:
        if not self.supports_batch:
            return await send_many(self, msgs)  # one send (and one token) per message
        requests = self.inner.requests_needed(msgs) if hasattr(self.inner, "requests_needed") else 1
        await self._take(requests)
        outcomes = await send_many(self.inner, msgs)
        if any(isinstance(o, TransientError) and o.throttled for o in outcomes):
            await self.limiter.on_throttled()
        elif any(isinstance(o, SendResult) for o in outcomes):
            await self.limiter.on_success()
        return outcomes

    async def _take(self, n: int) -> None:
        while n > 0:
            step = min(n, self._max_take)
            await self.limiter.wait(step, self.lane)
            n -= step
