"""Triggers, event outcomes and inline contact upserts in Redis.

Keys (all under the tenant):
- ``<prefix>:t:{<tenant>}:trigger:<event type>`` — the trigger (JSON), its version bumped on every PUT;
- ``<prefix>:t:{<tenant>}:event:<event id>`` — what the router decided for the event (JSON), with a TTL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from herald_common.events import EventOutcome, Trigger, TriggerIn
from herald_common.redisio import Keys
from herald_common.schemas import Contact, ContactIn
from herald_common.store import now


class TriggerStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis, self.prefix = redis, keys.prefix
        self.keys = keys

    def trigger_key(self, tenant_id: str, event_type: str) -> str:
        return f"{self.keys.t(tenant_id)}:trigger:{event_type}"

    def event_key(self, tenant_id: str, event_id: str) -> str:
        return f"{self.keys.t(tenant_id)}:event:{event_id}"

    # triggers -----------------------------------------------------------------------------------------
    async def _update(self, key: str, change: Callable[[bytes | None], str]) -> None:
        """Read-modify-write of one key under WATCH: a concurrent write is never lost (retried)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    value = change(await pipe.get(key))
                    pipe.multi()
                    pipe.set(key, value)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def put(self, tenant_id: str, event_type: str, data: TriggerIn) -> Trigger:
        saved: list[Trigger] = []

        def bump(previous: bytes | None) -> str:
            version = Trigger.model_validate_json(previous).version + 1 if previous else 1
            saved[:] = [
                Trigger(**data.model_dump(), event_type=event_type, version=version, updated_at=now())
            ]
            return saved[0].model_dump_json(exclude_none=True)

        await self._update(self.trigger_key(tenant_id, event_type), bump)
        return saved[0]

    async def get(self, tenant_id: str, event_type: str) -> Trigger | None:
        raw = await self.redis.get(self.trigger_key(tenant_id, event_type))
        return Trigger.model_validate_json(raw) if raw else None

    async def get_many(self, tenant_id: str, event_types: list[str]) -> dict[str, Trigger]:
        if not event_types:
            return {}
        raws = await self.redis.mget([self.trigger_key(tenant_id, t) for t in event_types])
        return {t: Trigger.model_validate_json(r) for t, r in zip(event_types, raws, strict=True) if r}

    async def delete(self, tenant_id: str, event_type: str) -> bool:
        return bool(await self.redis.delete(self.trigger_key(tenant_id, event_type)))

    # event outcomes -----------------------------------------------------------------------------------
    async def record(self, tenant_id: str, outcome: EventOutcome, ttl_s: int) -> None:
        payload = outcome.model_dump_json(exclude_none=True)
        await self.redis.set(self.event_key(tenant_id, outcome.id), payload, ex=ttl_s)

    async def outcome(self, tenant_id: str, event_id: str) -> EventOutcome | None:
        raw = await self.redis.get(self.event_key(tenant_id, event_id))
        return EventOutcome.model_validate_json(raw) if raw else None

    # inline contact fields ----------------------------------------------------------------------------
    async def upsert_contacts(self, tenant_id: str, items: list[tuple[str, ContactIn]]) -> None:
        """Merge each event's inline contact fields into the stored contact (created if absent): the
        fields given replace the stored ones, ``attributes`` are merged key by key. Under WATCH, so a
        concurrent write of the same contact is never lost."""
        merged: dict[str, dict[str, object]] = {}
        for contact_id, fields in items:  # several events of one contact in a batch: fold them first
            given = fields.model_dump(exclude_unset=True, mode="json")
            into = merged.setdefault(contact_id, {})
            attributes = {**into.get("attributes", {}), **given.pop("attributes", {})}  # type: ignore[dict-item]
            into.update(given)
            if attributes:
                into["attributes"] = attributes
        gate = asyncio.Semaphore(16)  # different contacts: their WATCH transactions never conflict

        async def one(contact_id: str, given: dict[str, object]) -> None:
            async with gate:
                await self._merge(tenant_id, contact_id, given)

        await asyncio.gather(*(one(contact_id, given) for contact_id, given in merged.items()))

    async def _merge(self, tenant_id: str, contact_id: str, given: dict[str, object]) -> None:
        def merge(raw: bytes | None) -> str:
            stored = orjson.loads(raw) if raw else {"id": contact_id}
            attributes = {**stored.get("attributes", {}), **given.get("attributes", {})}  # type: ignore[dict-item]
            doc = {**stored, **given, "attributes": attributes, "updated_at": now().isoformat()}
            return Contact.model_validate_json(orjson.dumps(doc)).model_dump_json()

        await self._update(self.keys.contact(tenant_id, contact_id), merge)
        await self.redis.zadd(self.keys.contact_index(tenant_id), {contact_id: 0})  # the tenant's listing
