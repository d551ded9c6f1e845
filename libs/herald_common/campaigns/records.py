"""The record per recipient: one outcome per (campaign, contact), and counts that always equal the
number of recipients in each outcome.

Redis, per campaign (``…:campaign:<id>:<part>``):

- ``rec``     hash, contact id → ``outcome`` or ``outcome|reason``;
- ``counts``  hash, outcome → recipients in it;
- ``reasons`` hash, ``outcome:reason`` → recipients in it with that reason;
- ``by:<outcome>`` sorted set (scores 0, ordered by contact id) of the recipients in each outcome but
  ``queued``, which ``GET /v1/campaigns/{id}/recipients?status=…`` pages through.

Every change is one Lua script (:data:`_MOVE`): a recipient moves from its old outcome to a new one only
when the new one ranks higher (:data:`~herald_common.campaigns.model.OUTCOME_RANK`), the counts, reasons
and indexes moved in the same step, so a replayed or late status event never counts twice. The fan-out
marks each batch ``queued`` (where nothing is recorded yet) in the same script that writes its checkpoint
(:meth:`Records.checkpoint`), guarded by the fan-out's lease; the tracker moves recipients on from their
status events (:func:`observer`).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from herald_common.campaigns.model import OUTCOME_RANK, OUTCOMES, outcome_of
from herald_common.redisio import Build, Keys, auto_pipeline, register_script
from herald_common.status import Folded, StatusObserver
from herald_common.wire import StatusEvent

_RANKS = ", ".join(f"{o}={r}" for o, r in OUTCOME_RANK.items())
_SLOTS = ", ".join(f"{o}={i + 4}" for i, o in enumerate(OUTCOMES))
# KEYS: 1 rec, 2 counts, 3 reasons, 4.. by:<outcome> (OUTCOMES order), then the script's own.
_LIB = f"""
local rank = {{{_RANKS}}}
local slot = {{{_SLOTS}}}
local function move(contact, outcome, reason, only_new)
  local old = redis.call('HGET', KEYS[1], contact)
  if old then
    if only_new then return 0 end
    local sep = string.find(old, '|', 1, true)
    local old_outcome, old_reason = old, ''
    if sep then old_outcome = string.sub(old, 1, sep - 1); old_reason = string.sub(old, sep + 1) end
    if rank[outcome] <= (rank[old_outcome] or 0) then return 0 end
    redis.call('HINCRBY', KEYS[2], old_outcome, -1)
    if old_reason ~= '' then redis.call('HINCRBY', KEYS[3], old_outcome .. ':' .. old_reason, -1) end
    if old_outcome ~= 'queued' then redis.call('ZREM', KEYS[slot[old_outcome]], contact) end
  end
  local value = outcome
  if reason ~= '' then
    value = outcome .. '|' .. reason
    redis.call('HINCRBY', KEYS[3], outcome .. ':' .. reason, 1)
  end
  redis.call('HSET', KEYS[1], contact, value)
  redis.call('HINCRBY', KEYS[2], outcome, 1)
  if outcome ~= 'queued' then redis.call('ZADD', KEYS[slot[outcome]], 0, contact) end
  return 1
end
"""
_N = 3 + len(OUTCOMES)
_MOVE = _LIB + "return move(ARGV[1], ARGV[2], ARGV[3], false)"
# KEYS[_N+1]: the campaign hash, KEYS[_N+2]: its lease. ARGV: lease token, field, cursor, field to add
# the count to, outcome, reason, contact ids... Returns -1 when the lease is no longer this holder's.
_MARK = (
    _LIB
    + f"""
if redis.call('GET', KEYS[{_N + 2}]) ~= ARGV[1] then return -1 end
local n = 0
for i = 7, #ARGV do n = n + move(ARGV[i], ARGV[5], ARGV[6], true) end
redis.call('HSET', KEYS[{_N + 1}], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[{_N + 1}], ARGV[4], #ARGV - 6)
return n
"""
)


def record_keys(keys: Keys, tenant_id: str, campaign_id: str) -> list[str]:
    parts = ["rec", "counts", "reasons", *(f"by:{o}" for o in OUTCOMES)]
    return [keys.campaign(tenant_id, campaign_id, p) for p in parts]


class Records:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self._move = register_script(redis, _MOVE)
        self._mark = register_script(redis, _MARK)
        self._auto = auto_pipeline(redis)

    async def move(
        self, tenant_id: str, campaign_id: str, contact_id: str, outcome: str, reason: str
    ) -> bool:
        """Move one recipient to ``outcome`` (if it ranks above its current one); True when it moved."""
        return bool(
            await self._auto.call(self.move_build(tenant_id, campaign_id, contact_id, outcome, reason))
        )

    def move_build(
        self, tenant_id: str, campaign_id: str, contact_id: str, outcome: str, reason: str
    ) -> Build:
        names = record_keys(self.keys, tenant_id, campaign_id)
        args = [contact_id, outcome, reason]
        return lambda pipe: self._move(keys=names, args=args, client=pipe)

    async def checkpoint(
        self,
        tenant_id: str,
        campaign_id: str,
        token: str,
        contact_ids: Sequence[str],
        *,
        cursor_field: str,
        count_field: str,
        outcome: str = "queued",
        reason: str = "",
    ) -> bool:
        """Record ``outcome`` for the batch's recipients that have no outcome yet, set the campaign's
        ``cursor_field`` to the batch's last id and add the batch's size to ``count_field``, all at once
        and only while ``token`` holds the campaign's lease; False when it does not (nothing written)."""
        names = [
            *record_keys(self.keys, tenant_id, campaign_id),
            self.keys.campaign(tenant_id, campaign_id),
            self.keys.campaign(tenant_id, campaign_id, "lease"),
        ]
        cursor = contact_ids[-1] if contact_ids else ""
        args = [token, cursor_field, cursor, count_field, outcome, reason, *contact_ids]
        return int(await self._mark(keys=names, args=args)) >= 0

    async def counts(self, tenant_id: str, campaign_id: str) -> tuple[dict[str, int], dict[str, int]]:
        """Recipients per outcome, and per ``outcome:reason``."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.campaign(tenant_id, campaign_id, "counts"))
            pipe.hgetall(self.keys.campaign(tenant_id, campaign_id, "reasons"))
            counts, reasons = await pipe.execute()
        return (
            {k.decode(): int(v) for k, v in counts.items() if int(v)},
            {k.decode(): int(v) for k, v in reasons.items() if int(v)},
        )

    async def page(
        self, tenant_id: str, campaign_id: str, outcome: str, after: str, limit: int
    ) -> list[tuple[str, str]]:
        """Recipients in ``outcome`` after contact id ``after``, in id order: (contact id, reason)."""
        start = f"({after}" if after else "-"
        index = self.keys.campaign(tenant_id, campaign_id, f"by:{outcome}")
        ids = [
            i.decode() for i in await self.redis.zrange(index, start, "+", bylex=True, offset=0, num=limit)
        ]
        if not ids:
            return []
        values = await self.redis.hmget(self.keys.campaign(tenant_id, campaign_id, "rec"), ids)
        return [(i, (v or b"").decode().partition("|")[2]) for i, v in zip(ids, values, strict=True)]


def observer(records: Records) -> StatusObserver:
    """The tracker's observer: a status event of a campaign's notification moves its recipient on."""

    def plan(event: StatusEvent, folded: Folded) -> Build | None:
        origin = folded.origin
        if origin is None or origin.campaign_id is None or origin.contact_id is None or not folded.changed:
            return None
        found = outcome_of(event.status, event.reason_code)
        if found is None:
            return None
        return records.move_build(event.tenant_id, origin.campaign_id, origin.contact_id, *found)

    return plan
