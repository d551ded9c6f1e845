"""The delivery ledger in Redis: one hash per deterministic delivery id.

States: ``sending`` (an attempt is under way) → ``scheduled`` (a transient failure; attempt
``next_attempt`` is held by the scheduler until ``due_at``) → ``sending`` … → ``sent`` (provider
accepted) → ``delivered`` / ``bounced`` / ``failed`` / ``expired``; or ``cancelled`` before an attempt.

``begin`` is one Lua script, one round trip per attempt: it refuses a delivery that already reached
``sent`` or a final state (a redelivered Kafka record is not sent twice), refuses a stale copy (a
record for attempt n arriving when attempt n+1 is already scheduled: the copy a crash left
uncommitted), answers ``cancelled`` for a notification cancelled by id, or by its cancellation key
after it was accepted (herald_common.cancel's records, read in the same script), and otherwise marks
it ``sending`` and counts the attempt. ``finish`` records the outcome; ``schedule`` the retry.

The only duplicate window is a crash after the provider accepted and before ``finish`` wrote
``sent``: the record is redelivered, the ledger still says ``sending``, and the message is sent
again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from herald_common.redisio import Keys, auto_pipeline, register_script

DONE = ("sent", "delivered", "bounced", "failed", "expired", "cancelled")

_BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
local attempts = redis.call('HGET', KEYS[1], 'attempts') or '0'
if state then
  for i = 5, #ARGV do
    if state == ARGV[i] then return {'done', attempts} end
  end
  if state == 'scheduled' then
    local nxt = tonumber(redis.call('HGET', KEYS[1], 'next_attempt') or '0')
    if tonumber(ARGV[2]) < nxt then return {'stale', attempts} end
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'cancelled', attempts} end
if KEYS[3] then
  local at = redis.call('GET', KEYS[3])
  if at and tonumber(ARGV[4]) < tonumber(at) then return {'cancelled', attempts} end
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'sending', 'updated_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'go', tostring(attempts)}
"""


@dataclass(slots=True, frozen=True)
class Begin:
    outcome: Literal["go", "done", "stale", "cancelled"]
    attempts: int


@dataclass(slots=True, frozen=True)
class Cancellable:
    """What ``begin`` needs to check that a delivery's notification was not cancelled."""

    tenant_id: str
    notification_id: str
    key: str | None
    accepted_at: float


@dataclass(slots=True)
class Entry:
    state: str
    attempts: int
    provider: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None


class Ledger:
    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self._begin = register_script(redis, _BEGIN)
        self._auto = auto_pipeline(redis)

    async def begin(self, tenant_id: str, delivery_id: str, attempt: int, cancel: Cancellable) -> Begin:
        """Start an attempt of a record that carries attempt number ``attempt``, unless its
        notification was cancelled (outcome ``cancelled``, the ledger left as it was)."""
        return (await self.begin_many([(tenant_id, delivery_id, attempt, cancel)]))[0]

    async def begin_many(self, items: list[tuple[str, str, int, Cancellable]]) -> list[Begin]:
        """:meth:`begin` for many deliveries, in one pipeline."""
        now = time.time()
        calls = []
        for tenant_id, delivery_id, attempt, cancel in items:
            keys = [
                self.keys.ledger(tenant_id, delivery_id),
                self.keys.cancelled(cancel.tenant_id, cancel.notification_id),
            ]
            if cancel.key:
                keys.append(self.keys.cancelled_key(cancel.tenant_id, cancel.key))
            calls.append((keys, [now, attempt, self.ttl_s, cancel.accepted_at, *DONE]))

        async def build(pipe: Pipeline) -> None:
            for keys, args in calls:
                await self._begin(keys=keys, args=args, client=pipe)

        replies = await self._auto.call_many(build)
        return [Begin(outcome.decode(), int(attempts)) for outcome, attempts in replies]

    async def schedule(
        self, tenant_id: str, delivery_id: str, next_attempt: int, due_at: float, reason: str
    ) -> None:
        await self._write(
            tenant_id,
            delivery_id,
            {"state": "scheduled", "next_attempt": next_attempt, "due_at": due_at, "reason": reason},
        )

    async def finish(
        self,
        tenant_id: str,
        delivery_id: str,
        state: str,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        await self._write(
            tenant_id,
            delivery_id,
            {
                "state": state,
                "provider": provider or "",
                "provider_message_id": provider_message_id or "",
                "reason": reason or "",
            },
        )

    async def reset(self, tenant_id: str, delivery_id: str) -> None:
        """Forget a delivery, so its next record is attempted afresh (a dead letter replayed)."""
        await self.redis.delete(self.keys.ledger(tenant_id, delivery_id))

    async def get(self, tenant_id: str, delivery_id: str) -> Entry | None:
        raw = await self.redis.hgetall(self.keys.ledger(tenant_id, delivery_id))
        if not raw:
            return None
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return Entry(
            d.get("state", ""),
            int(d.get("attempts", "0")),
            d.get("provider") or None,
            d.get("provider_message_id") or None,
            d.get("reason") or None,
        )

    async def sent_many(self, items: list[tuple[str, str, str, str]]) -> None:
        """``finish(…, "sent", …)`` for many (tenant, delivery, provider, provider message id), at once."""
        await self._write_many(
            [
                (t, did, {"state": "sent", "provider": p, "provider_message_id": mid, "reason": ""})
                for t, did, p, mid in items
            ]
        )

    async def _write(self, tenant_id: str, delivery_id: str, fields: dict[str, str | int | float]) -> None:
        await self._write_many([(tenant_id, delivery_id, fields)])

    async def _write_many(self, items: list[tuple[str, str, dict[str, str | int | float]]]) -> None:
        now = time.time()
        writes = [(self.keys.ledger(t, did), {**fields, "updated_at": now}) for t, did, fields in items]

        def build(pipe: Pipeline) -> None:
            for key, mapping in writes:
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, self.ttl_s)

        await self._auto.call(build)
