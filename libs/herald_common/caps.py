"""Frequency caps: at most ``max`` notifications of a category per contact over each rolling window
``per`` (an ISO 8601 duration: ``P1D``, ``P7D``, ``PT6H``, ``P2W``), e.g. a tenant's
``{"marketing": [{"max": 2, "per": "P1D"}, {"max": 5, "per": "P7D"}]}``. Only the categories named are
capped, so transactional traffic is exempt unless a cap names it.

One sorted set per (tenant, contact, category) — member: the notification id, score: when it was
counted. :meth:`FrequencyCaps.admit` is one Lua script: a notification already counted is admitted
again (a redelivered or released request is not counted twice), else entries older than the longest
window are trimmed, every window is counted, and the notification is added only if all are under their
``max``. Being one script, concurrent routers never exceed a cap. The router counts a notification
when it passes the cap step, that is when it emits its deliveries or holds it for quiet hours (a held
notification keeps the place it will use when released).
"""

from __future__ import annotations

import math
from typing import Annotated

import redis.asyncio as aioredis
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from herald_common.durations import DURATION_PATTERN, parse_duration
from herald_common.fields import whole
from herald_common.redisio import Keys, auto_pipeline, register_script

MAX_WINDOW_S = 366 * 86400


def _window(text: str) -> str:
    seconds = duration_s(text)
    if not 1 <= seconds <= MAX_WINDOW_S:
        raise ValueError("must be between one second and 366 days")
    return text


Window = Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN), AfterValidator(_window)]


def duration_s(text: str) -> float:
    return parse_duration(text).total_seconds()


class FrequencyCap(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max: Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(whole)]
    per: Annotated[
        str, StringConstraints(max_length=32, pattern=DURATION_PATTERN), AfterValidator(_window)
    ] = Field(description="ISO 8601 duration: P1D, P7D, PT6H … (one second to 366 days)")


# The TTL argument is appended last; the script reads pairs from ARGV[4] up to the TTL.
_ADMIT = """
local n_args = #ARGV
local ttl = ARGV[n_args]
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
local now = tonumber(ARGV[1])
local longest = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. tostring(now - longest))
for i = 4, n_args - 1, 2 do
  local n = redis.call('ZCOUNT', KEYS[1], '(' .. tostring(now - tonumber(ARGV[i + 1])), '+inf')
  if n >= tonumber(ARGV[i]) then return 0 end
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""


class FrequencyCaps:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._admit = register_script(redis, _ADMIT)
        self._auto = auto_pipeline(redis)

    async def admit(
        self,
        tenant_id: str,
        contact: str,
        category: str,
        notification_id: str,
        caps: list[FrequencyCap],
        now: float,
    ) -> bool:
        """Count ``notification_id`` unless that would exceed a cap; True when it is within them all."""
        if not caps:
            return True
        windows = [(c.max, duration_s(c.per)) for c in caps]
        longest = max(per for _, per in windows)
        args: list[object] = [now, notification_id, longest]
        for limit, per in windows:
            args += [limit, per]
        args.append(math.ceil(longest) + 60)
        key = self.keys.frequency(tenant_id, contact, category)
        return bool(await self._auto.call(lambda pipe: self._admit(keys=[key], args=args, client=pipe)))
