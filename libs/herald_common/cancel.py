"""Cancellation of notifications that have not been sent yet.

Records in Redis (each with :data:`CANCEL_TTL_S`, longer than anything is held):

- ``…:t:{<tenant>}:cancel:n:<id>`` — the notification was cancelled (``POST …/{id}:cancel``);
- ``…:t:{<tenant>}:cancel:k:<key>`` — the time the cancellation key was last cancelled: it cancels every
  notification of the tenant carrying that key and *accepted before* that time (a later one with the
  same key, e.g. the next booking's reminder, is not affected);
- ``…:t:{<tenant>}:waiting:<key>`` — a set of the notifications with that key the router handed to the
  scheduler (scheduled for ``send_at`` or held for quiet hours), so a cancel by key can say which
  notifications it stopped and mark them ``cancelled`` at once.

The router checks :meth:`Cancellations.is_cancelled` before routing (and again when a scheduled or
held request comes back), the sender just before calling the provider; either marks what it stops
``cancelled`` (reason code ``cancelled``). A notification the provider already accepted cannot be
cancelled. :func:`cancel_by_key` is the library entry point for anything that cancels by key (the API,
and event triggers such as ``booking.cancelled`` cancelling ``booking:<id>``); :func:`cancelled_events`
builds the status events announcing what it cancelled.
"""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from herald_common.ids import partition_key
from herald_common.policy import CANCELLED
from herald_common.redisio import Keys, auto_pipeline, register_script
from herald_common.topics import Topics
from herald_common.wire import StatusEvent

CANCEL_TTL_S = 400 * 86400

_RAISE = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
local ids = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
return ids
"""


async def cancel_by_key(redis: aioredis.Redis, keys: Keys, tenant_id: str, key: str, at: float) -> list[str]:
    """Cancel every notification of ``tenant_id`` carrying cancellation key ``key`` accepted before
    ``at`` (Unix seconds). Returns the ids of those that were waiting in the scheduler (the ones still
    on their way through Kafka are stopped by the router or sender when they get there)."""
    script = register_script(redis, _RAISE)
    ids = await script(
        keys=[keys.cancelled_key(tenant_id, key), keys.waiting_with_key(tenant_id, key)],
        args=[at, CANCEL_TTL_S],
    )
    return sorted(i.decode() if isinstance(i, bytes) else str(i) for i in ids)


async def cancel_notification(
    redis: aioredis.Redis, keys: Keys, tenant_id: str, notification_id: str, at: float
) -> bool:
    """Cancel one notification; False when it was already cancelled."""
    return bool(await redis.set(keys.cancelled(tenant_id, notification_id), at, ex=CANCEL_TTL_S, nx=True))


def cancelled_events(tenant_id: str, ids: list[str], at: float, reason: str) -> list[StatusEvent]:
    return [
        StatusEvent(
            tenant_id=tenant_id,
            notification_id=nid,
            status="cancelled",
            at=at,
            reason=reason,
            reason_code=CANCELLED,
        )
        for nid in ids
    ]


async def announce(producer: AIOKafkaProducer, topics: Topics, events: list[StatusEvent]) -> None:
    """Produce status events and wait for the acknowledgements."""
    futures = [
        await producer.send(
            topics.status,
            orjson.dumps(e.model_dump(exclude_none=True)),
            key=partition_key(e.tenant_id, e.notification_id),
        )
        for e in events
    ]
    if futures:
        await asyncio.gather(*futures)


class Cancellations:
    """Checks (pipelined with other Redis reads of the same loop turn) and the waiting index."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._auto = auto_pipeline(redis)

    async def is_cancelled(
        self, tenant_id: str, notification_id: str, key: str | None, accepted_at: float
    ) -> bool:
        return (await self.are_cancelled([(tenant_id, notification_id, key, accepted_at)]))[0]

    async def are_cancelled(self, asked: list[tuple[str, str, str | None, float]]) -> list[bool]:
        """:meth:`is_cancelled` for many notifications ``(tenant, id, key, accepted_at)``, one round trip."""

        keyed = []
        for tenant_id, notification_id, key, _ in asked:
            keyed.append((tenant_id, self.keys.cancelled(tenant_id, notification_id)))
            if key:
                keyed.append((tenant_id, self.keys.cancelled_key(tenant_id, key)))
        replies = iter(await self._auto.get_many(keyed))
        out = []
        for _, _, key, accepted_at in asked:
            by_id = next(replies)
            by_key = next(replies) if key else None
            out.append(by_id is not None or (by_key is not None and accepted_at < float(by_key)))
        return out

    async def waiting(self, tenant_id: str, key: str, notification_id: str) -> None:
        name = self.keys.waiting_with_key(tenant_id, key)

        def build(pipe: object) -> None:
            pipe.sadd(name, notification_id)  # type: ignore[attr-defined]
            pipe.expire(name, CANCEL_TTL_S)  # type: ignore[attr-defined]

        await self._auto.call(build)

    async def done_waiting(self, tenant_id: str, key: str, notification_id: str) -> None:
        name = self.keys.waiting_with_key(tenant_id, key)
        await self._auto.call(lambda pipe: pipe.srem(name, notification_id))
