"""Outbound rate limit per provider account, shared by every sender replica through Redis.

One token bucket per account lives in one Redis hash, ``{prefix}:ratelimit:{<account>}`` (the
braces are a cluster hash tag), with fields ``tokens``, ``ts`` (last refill, Redis ``TIME``),
``eff`` (effective rate), ``eff_ts`` (last change of ``eff``) and ``thr_ts`` (last throttle).
Every operation is one Lua script run atomically on the server and timed by the server's clock, so
replicas never disagree about time and together never take more than ``rate * t + burst`` tokens.
All replicas must be configured with the same rate and burst (they are passed on every call).

Lanes: transactional traffic may empty the bucket; bulk may take tokens only while at least
``reserve_fraction * burst`` (20 % by default) would remain afterwards. That reserve is kept for
transactional sends, so a campaign saturating the bulk lane never makes a one-time code wait for
more than the refill of a few tokens.

Adaptive rate: when the provider throttles us (429 or a throttling code) :meth:`RateLimiter.on_throttled`
halves the effective rate (``backoff_factor``), never below ``min_rate_fraction`` (10 %) of the
configured rate, at most once per ``throttle_cooldown_s`` (a burst of 429s from requests that were
already in flight counts once). :meth:`RateLimiter.on_success` recovers it by ``recovery_per_s`` (5 %)
of the configured rate per second since the last change, up to the configured rate. The effective
rate is stored in the same hash, so every replica slows down and recovers together.

``acquire`` never sleeps: it answers 0 when granted, else how long to wait before asking again.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Literal

from redis.asyncio import Redis

from herald_common.redisio import auto_pipeline, register_script

Lane = Literal["transactional", "bulk"]

_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local min_rate = rate * tonumber(ARGV[4])
local ttl_ms = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', key, 'tokens', 'ts', 'eff', 'eff_ts', 'thr_ts')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
local eff = tonumber(h[3]) or rate
local eff_ts = tonumber(h[4]) or now
local thr_ts = tonumber(h[5]) or 0
if eff > rate then eff = rate end
if eff < min_rate then eff = min_rate end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * eff)
  ts = now
end
local wait = 0
if op == 'acquire' then
  local n = tonumber(ARGV[6])
  local floor = tonumber(ARGV[7])
  if tokens - n >= floor then
    tokens = tokens - n
  else
    wait = (floor + n - tokens) / eff
  end
elseif op == 'throttled' then
  if now - thr_ts >= tonumber(ARGV[6]) then
    eff = math.max(min_rate, eff * tonumber(ARGV[7]))
    eff_ts = now
    thr_ts = now
  end
elseif op == 'success' then
  if eff < rate and now > eff_ts then
    eff = math.min(rate, eff + (now - eff_ts) * rate * tonumber(ARGV[6]))
    eff_ts = now
  end
end
redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', ts),
  'eff', string.format('%.6f', eff), 'eff_ts', string.format('%.6f', eff_ts),
  'thr_ts', string.format('%.6f', thr_ts))
redis.call('PEXPIRE', key, ttl_ms)
return {string.format('%.6f', wait), string.format('%.6f', eff)}
"""


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        account: str,
        rate: float,
        burst: float,
        prefix: str = "herald",
        reserve_fraction: float = 0.2,
        min_rate_fraction: float = 0.1,
        backoff_factor: float = 0.5,
        recovery_per_s: float = 0.05,
        throttle_cooldown_s: float = 1.0,
        recover_interval_s: float = 0.2,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if not 0 <= reserve_fraction < 1 or not 0 < min_rate_fraction <= 1 or not 0 < backoff_factor < 1:
            raise ValueError(
                "reserve_fraction in [0, 1), min_rate_fraction in (0, 1], backoff_factor in (0, 1)"
            )
        self.key = f"{prefix}:ratelimit:{{{account}}}"
        self.rate = rate
        self.burst = burst
        self.reserve = reserve_fraction * burst
        self._min_fraction = min_rate_fraction
        self._backoff = backoff_factor
        self._recovery = recovery_per_s
        self._cooldown = throttle_cooldown_s
        self._recover_interval = recover_interval_s
        # Long enough that an idle key only expires once its bucket would be full anyway.
        self._ttl_ms = math.ceil(max(60.0, 2 * burst / (rate * min_rate_fraction)) * 1000)
        self._script = register_script(redis, _SCRIPT)
        self._auto = auto_pipeline(redis)  # shares the round trips of the sender's other commands
        self._eff_seen = rate
        self._last_recover = -math.inf

    async def acquire(self, n: int = 1, lane: Lane = "transactional") -> float:
        """Take ``n`` tokens: 0.0 when granted, else the seconds to wait before trying again."""
        floor = self.reserve if lane == "bulk" else 0.0
        if n < 1 or n > self.burst - floor:
            raise ValueError(f"cannot take {n} tokens from a {lane} bucket of {self.burst - floor:g}")
        wait, self._eff_seen = await self._run("acquire", n, floor)
        return wait

    async def wait(self, n: int = 1, lane: Lane = "transactional") -> None:
        """Sleep until ``n`` tokens are granted."""
        while True:
            delay = await self.acquire(n, lane)
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def on_throttled(self) -> float:
        """The provider throttled us: slow every replica down. Returns the new effective rate."""
        _, self._eff_seen = await self._run("throttled", self._cooldown, self._backoff)
        return self._eff_seen

    async def on_success(self) -> None:
        """A send went through: recover the effective rate (cheap no-op while it is at full rate)."""
        now = time.monotonic()
        if self._eff_seen >= self.rate or now - self._last_recover < self._recover_interval:
            return
        self._last_recover = now
        _, self._eff_seen = await self._run("success", self._recovery)

    async def effective_rate(self) -> float:
        """The shared effective rate now, in tokens per second."""
        _, self._eff_seen = await self._run("peek")
        return self._eff_seen

    async def _run(self, op: str, *args: float) -> tuple[float, float]:
        keys, argv = [self.key], [op, self.rate, self.burst, self._min_fraction, self._ttl_ms, *args]
        wait, eff = await self._auto.call(lambda pipe: self._script(keys=keys, args=argv, client=pipe))
        return float(wait), float(eff)
