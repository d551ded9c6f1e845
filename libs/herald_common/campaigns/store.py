"""Campaigns in Redis: configuration, state, progress, the audience, the fan-out lease.

Per campaign (``…:t:{<tenant>}:campaign:<id>``), a hash: ``cfg`` (the :class:`Campaign` JSON), ``state``,
``rate`` (recipients per second), ``audience`` (ids uploaded), ``recipients`` (the snapshot's size),
``phase`` (``snapshot`` → ``fanout`` → ``done``, or ``cancelling``), the cursors ``snap_cursor`` /
``cursor`` (the last contact id handled, ids being taken in order), ``fanned`` (recipients published),
``started_at``, ``ended_at``. Beside it: ``audience`` (sorted set of uploaded ids, scores 0, so ordered
and deduplicated), ``recipients`` (the segment's snapshot), ``lease``, ``paused`` (the flag senders
read), and the per-recipient record (:mod:`.records`). The tenant's campaigns are listed from
``…:t:{<tenant>}:campaigns`` (by creation time); those to fan out from ``…:campaigns:active`` (by when due).

Every state change is one script that checks the current state (:meth:`CampaignStore.transition`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from herald_common.campaigns.model import Campaign, CampaignIn
from herald_common.redisio import Keys, register_script

# KEYS: campaign hash, paused flag. ARGV: allowed states (comma-separated), new state, two unused,
# pause flag ('1' set, '0' clear, '' leave), then field/value pairs. Returns {1, new} or {0, current}.
# The active set is global (another slot), so CampaignStore.transition updates it around the script.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then ok = true end end
if not ok then return {0, cur} end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[5] == '1' then redis.call('SET', KEYS[2], '1')
elseif ARGV[5] == '0' then redis.call('DEL', KEYS[2]) end
return {1, ARGV[2]}
"""
# KEYS: campaign hash, audience set. ARGV: ids. Adds while the campaign is a draft; -1 otherwise.
_APPEND = """
if redis.call('HGET', KEYS[1], 'state') ~= 'draft' then return -1 end
local added = 0
for i = 1, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do args[#args + 1] = 0; args[#args + 1] = ARGV[j] end
  added = added + redis.call('ZADD', KEYS[2], 'NX', unpack(args))
end
redis.call('HINCRBY', KEYS[1], 'audience', added)
return added
"""
_RATE = """
local cur = redis.call('HGET', KEYS[1], 'state')
if (not cur) or cur == 'completed' or cur == 'cancelled' then return {0, cur or ''} end
redis.call('HSET', KEYS[1], 'rate', ARGV[1])
return {1, cur}
"""
# Lease: KEYS[1] lease; ARGV token, ttl ms. Renew/release only by the holder.
_RENEW = """if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

ACTIVE_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A campaign as read: its configuration and the hash's other fields."""

    campaign: Campaign
    state: str
    rate: float
    fields: dict[str, str]

    def number(self, name: str) -> float:
        return float(self.fields.get(name) or 0)


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class CampaignStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self._transition = register_script(redis, _TRANSITION)
        self._append = register_script(redis, _APPEND)
        self._rate = register_script(redis, _RATE)
        self._renew = register_script(redis, _RENEW)
        self._release = register_script(redis, _RELEASE)

    async def create(self, tenant_id: str, body: CampaignIn, *, follow_up_of: str | None = None) -> Snapshot:
        now = time.time()
        campaign = Campaign(
            id=f"c_{secrets.token_hex(8)}",
            tenant_id=tenant_id,
            name=body.name,
            template_id=body.template_id,
            channels=body.channels,
            category=body.category,
            data=body.data,
            send_at=body.send_at.timestamp() if body.send_at else None,
            local_time=body.local_time,
            segment=body.segment,
            created_at=now,
            follow_up_of=follow_up_of,
        )
        fields = {
            "cfg": campaign.model_dump_json(exclude_none=True),
            "state": "draft",
            "rate": repr(body.rate_per_s),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.campaign(tenant_id, campaign.id), mapping=fields)
            pipe.zadd(self.keys.campaigns(tenant_id), {campaign.id: now})
            await pipe.execute()
        return Snapshot(campaign, "draft", body.rate_per_s, {})

    async def get(self, tenant_id: str, campaign_id: str) -> Snapshot | None:
        raw = await self.redis.hgetall(self.keys.campaign(tenant_id, campaign_id))
        if not raw or b"cfg" not in raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return Snapshot(
            Campaign.model_validate_json(fields.pop("cfg")),
            fields.pop("state"),
            float(fields.pop("rate")),
            fields,
        )

    async def ids(self, tenant_id: str, before: float | None, limit: int) -> list[tuple[str, float]]:
        """The tenant's campaigns, newest first, created before ``before`` (None: from the newest)."""
        top = f"({before}" if before is not None else "+inf"
        found = await self.redis.zrevrangebyscore(
            self.keys.campaigns(tenant_id), top, "-inf", start=0, num=limit, withscores=True
        )
        return [(_text(m), float(s)) for m, s in found]

    async def transition(
        self,
        tenant_id: str,
        campaign_id: str,
        allowed: Iterable[str],
        to: str,
        *,
        active: float | str | None = "",
        paused: str = "",
        **fields: Any,
    ) -> tuple[bool, str]:
        """Move to ``to`` if the state is one of ``allowed``; ``active``: a due time puts it in the
        active set, None takes it out, "" leaves it. Returns (moved, the state now)."""
        score = "" if active == "" else "-" if active is None else repr(active)
        args: list[Any] = [",".join(allowed), to, f"{tenant_id}{ACTIVE_SEP}{campaign_id}", score, paused]
        for k, v in fields.items():
            args += [k, v]
        names = [
            self.keys.campaign(tenant_id, campaign_id),
            self.keys.campaign(tenant_id, campaign_id, "paused"),
        ]
        # The global active set is a separate step: an entry is added before the state moves and
        # removed after it, so a crash in between leaves at most an entry the fan-out skips (it
        # reads the state), never a running campaign nobody fans out.
        active_key, member = self.keys.campaigns_active(), args[2]
        added = await self.redis.zadd(active_key, {member: float(score)}) if score not in ("", "-") else 0
        moved, state = await self._transition(keys=names, args=args)
        if (moved and score == "-") or (not moved and added):
            await self.redis.zrem(active_key, member)
        return bool(moved), _text(state)

    async def set_rate(self, tenant_id: str, campaign_id: str, rate: float) -> tuple[bool, str]:
        ok, state = await self._rate(keys=[self.keys.campaign(tenant_id, campaign_id)], args=[repr(rate)])
        return bool(ok), _text(state)

    async def set_fields(self, tenant_id: str, campaign_id: str, **fields: Any) -> None:
        await self.redis.hset(self.keys.campaign(tenant_id, campaign_id), mapping=fields)

    async def append_audience(self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]) -> int:
        """Add ids to a draft's audience; the number new to it, or -1 once the campaign has started."""
        if not contact_ids:
            return 0
        names = [
            self.keys.campaign(tenant_id, campaign_id),
            self.keys.campaign(tenant_id, campaign_id, "audience"),
        ]
        return int(await self._append(keys=names, args=list(contact_ids)))

    async def members(self, key: str, after: str, count: int) -> list[str]:
        """Up to ``count`` members of an id-ordered set after ``after``."""
        start = f"({after}" if after else "-"
        return [_text(m) for m in await self.redis.zrange(key, start, "+", bylex=True, offset=0, num=count)]

    # fan-out lease ------------------------------------------------------------------------------------
    async def due(self, now: float, limit: int) -> list[tuple[str, str]]:
        found = await self.redis.zrangebyscore(self.keys.campaigns_active(), "-inf", now, start=0, num=limit)
        return [tuple(_text(m).split(ACTIVE_SEP, 1)) for m in found]  # type: ignore[misc]

    async def lease(self, tenant_id: str, campaign_id: str, token: str, ttl_s: float) -> bool:
        key = self.keys.campaign(tenant_id, campaign_id, "lease")
        return bool(await self.redis.set(key, token, nx=True, px=int(ttl_s * 1000)))

    async def renew(self, tenant_id: str, campaign_id: str, token: str, ttl_s: float) -> bool:
        key = self.keys.campaign(tenant_id, campaign_id, "lease")
        return bool(await self._renew(keys=[key], args=[token, int(ttl_s * 1000)]))

    async def release(self, tenant_id: str, campaign_id: str, token: str) -> None:
        await self._release(keys=[self.keys.campaign(tenant_id, campaign_id, "lease")], args=[token])
