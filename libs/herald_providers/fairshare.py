"""A fair share of a provider account's bulk rate between tenants, shared by every replica via Redis.

Each tenant gets a virtual clock (``tat``, its theoretical arrival time, GCRA style) that advances by
``busy / rate`` per message it sends, where ``rate`` is the account's effective rate (read from its
token bucket, :mod:`herald_providers.ratelimit`) and ``busy`` the number of tenants with work waiting
right now: those with deliveries parked, or whose clock runs ahead of the present. So a tenant alone is
paced at the full rate, two busy tenants at half each, N at 1/N; a tenant that only sends now and then
is busy for one share interval after each message, and the share it leaves unused goes to the others.

:meth:`FairShare.ask` answers one of:

- ``go`` with a delay: the tenant is at most ``tolerance_s`` ahead of its share: send once its slot
  comes, after the delay (the token bucket still guards the actual calls). Waiting for the slot rather
  than in the bucket keeps each tenant's calls spaced by its share, however many of them wait;
- ``park`` with a delay: the tenant is ahead of its share; the caller hands the delivery to the
  scheduler for that long, so the partition moves on to other tenants' deliveries. Parked deliveries
  of a tenant queue behind each other (``park`` clock), one share interval apart, and a fresh delivery
  of a tenant that has a queue joins its end, so they come back in order, about once each;
- ``wait`` with a delay: the tenant's queue already reaches ``horizon_s`` ahead; the caller waits in
  place that long and asks again (this bounds what Redis holds for one tenant).

A delivery coming back from the queue asks with ``returning=True``: it may go as soon as the tenant's
clock allows, without queueing behind fresh deliveries. Parked deliveries are due ``lead_s / 2``
before their slot and a returning one may run ``lead_s`` further ahead than a fresh one, so the
scheduler's release delay does not leave the tenant's slots unused; one that comes back late anyway
may use the slots its tenant missed in the last ``lead_s``. If the share shrank meanwhile (another tenant
became busy), it is parked again at the end of its tenant's queue.

Keys (hash tag = the account, as the token bucket's): ``{prefix}:fairshare:{<account>}`` (a hash of
``tat:<tenant>`` and ``park:<tenant>``) and ``…:busy`` (sorted set, tenant → until when it counts as
busy). Tenants idle for ``window_s`` are forgotten. One Lua script per ask, timed by the server's
clock (tests may pass ``now``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from herald_common.redisio import auto_pipeline, register_script

_SCRIPT = """
local tenant = ARGV[1]
local rate = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local ttl_ms = tonumber(ARGV[6])
local returning = ARGV[7] == '1'
local lead = tonumber(ARGV[9])
local now
if ARGV[8] ~= '' then
  now = tonumber(ARGV[8])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - window))
for _, g in ipairs(gone) do
  redis.call('HDEL', KEYS[1], 'tat:' .. g, 'park:' .. g)
  redis.call('ZREM', KEYS[2], g)
end
local eff = tonumber(redis.call('HGET', KEYS[3], 'eff') or '') or rate
if eff > rate then eff = rate end
local busy = redis.call('ZCOUNT', KEYS[2], now, '+inf')
local mine = tonumber(redis.call('ZSCORE', KEYS[2], tenant) or '')
if not mine or mine < now then busy = busy + 1 end
local interval = busy / eff
local h = redis.call('HMGET', KEYS[1], 'tat:' .. tenant, 'park:' .. tenant)
-- a returning delivery may take up slots its tenant lost while the scheduler brought it back late
local tat = math.max(tonumber(h[1]) or now, returning and now - lead or now)
local park = tonumber(h[2]) or 0
local action, delay = 'go', 0
if (returning and tat - now <= tolerance + lead) or (park <= now and tat - now <= tolerance) then
  delay = math.max(tat - now, 0)
  tat = tat + interval
else
  local slot = math.max(park, tat, now) + interval
  if slot - now > horizon then
    return {'wait', string.format('%.6f', slot - now - horizon), tostring(busy)}
  end
  park = slot
  action, delay = 'park', slot - tolerance - lead / 2 - now
end
redis.call('HSET', KEYS[1], 'tat:' .. tenant, string.format('%.6f', tat),
  'park:' .. tenant, string.format('%.6f', park))
redis.call('ZADD', KEYS[2], math.max(tat, park), tenant)
redis.call('PEXPIRE', KEYS[1], ttl_ms)
redis.call('PEXPIRE', KEYS[2], ttl_ms)
return {action, string.format('%.6f', math.max(delay, 0)), tostring(busy)}
"""

Action = Literal["go", "park", "wait"]


@dataclass(frozen=True, slots=True)
class Answer:
    action: Action
    delay_s: float = 0.0
    busy: int = 1  # tenants sharing the rate at that moment, the asker included


def share_interval(rate: float, busy: int) -> float:
    """Seconds between two messages of one tenant when ``busy`` tenants share ``rate`` per second."""
    return max(1, busy) / rate


class FairShare:
    def __init__(
        self,
        redis: Redis,
        *,
        account: str,
        rate: float,
        prefix: str = "herald",
        window_s: float = 5.0,
        tolerance_s: float = 0.5,
        horizon_s: float = 120.0,
        lead_s: float = 0.2,
    ) -> None:
        if rate <= 0 or window_s <= 0 or tolerance_s < 0 or horizon_s <= tolerance_s:
            raise ValueError("rate and window_s must be > 0, horizon_s > tolerance_s >= 0")
        self.key = f"{prefix}:fairshare:{{{account}}}"
        self.busy_key = f"{self.key}:busy"
        self.bucket_key = f"{prefix}:ratelimit:{{{account}}}"  # the account's token bucket (its eff)
        self.rate = rate
        self._args = [rate, window_s, tolerance_s, horizon_s, math.ceil((window_s + horizon_s) * 2000)]
        self._lead = lead_s
        self._script = register_script(redis, _SCRIPT)
        self._auto = auto_pipeline(redis)

    async def ask(self, tenant: str, *, returning: bool = False, now: float | None = None) -> Answer:
        keys = [self.key, self.busy_key, self.bucket_key]
        args = [
            tenant,
            *self._args,
            "1" if returning else "0",
            "" if now is None else repr(now),
            self._lead,
        ]
        action, delay, busy = await self._auto.call(
            lambda pipe: self._script(keys=keys, args=args, client=pipe)
        )
        return Answer(action.decode(), float(delay), int(busy))
