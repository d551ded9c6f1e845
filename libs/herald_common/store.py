"""Tenant data in Redis: tenants, API keys (hashed), contacts, templates and suppressions.

The gateway writes; the router reads. Values are JSON documents validated on the way in.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from herald_common.policy import MANUAL
from herald_common.redisio import Keys, auto_pipeline
from herald_common.schemas import Contact, ContactIn, Template, TemplateIn, Tenant, TenantIn, TenantPatch
from herald_common.suppressions import Suppressions


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._auto = auto_pipeline(redis)  # the router's per-record reads share round trips
        self.suppressions = Suppressions(redis, keys)

    # tenants ------------------------------------------------------------------------------------------
    async def create_tenant(self, data: TenantIn) -> Tenant | None:
        tenant = Tenant(
            **{**data.model_dump(), "id": data.id or f"t_{secrets.token_hex(8)}"}, created_at=now()
        )
        created = await self.redis.set(self.keys.tenant(tenant.id), tenant.model_dump_json(), nx=True)
        return tenant if created else None

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        raw = await self.redis.get(self.keys.tenant(tenant_id))
        return Tenant.model_validate_json(raw) if raw else None

    async def update_tenant(self, tenant_id: str, patch: TenantPatch) -> Tenant | None:
        tenant = await self.get_tenant(tenant_id)
        if tenant is None:
            return None
        updated = Tenant.model_validate({**tenant.model_dump(), **patch.model_dump(exclude_unset=True)})
        await self.redis.set(self.keys.tenant(tenant_id), updated.model_dump_json())
        return updated

    async def issue_api_key(self, tenant_id: str, name: str) -> tuple[str, str]:
        key_id = f"k_{secrets.token_hex(6)}"
        api_key = f"hk_{key_id[2:]}_{secrets.token_urlsafe(32)}"
        digest = hash_api_key(api_key)
        record = orjson.dumps(
            {"tenant_id": tenant_id, "key_id": key_id, "name": name, "created_at": now().isoformat()}
        )
        # Two single-slot steps (the api key is global, the index per tenant): the index first, so a
        # crash in between leaves at most a listed key that never resolves, which revoke clears.
        await self.redis.hset(self.keys.tenant_keys(tenant_id), key_id, digest)
        await self.redis.set(self.keys.api_key(digest), record)
        return key_id, api_key

    async def revoke_api_key(self, tenant_id: str, key_id: str) -> bool:
        digest = await self.redis.hget(self.keys.tenant_keys(tenant_id), key_id)
        if digest is None:
            return False
        # The global key first: once it is gone the key no longer authenticates, whatever follows.
        await self.redis.delete(self.keys.api_key(digest.decode()))
        await self.redis.hdel(self.keys.tenant_keys(tenant_id), key_id)
        return True

    async def resolve_api_key(self, api_key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.api_key(hash_api_key(api_key)))
        return orjson.loads(raw) if raw else None

    # contacts -----------------------------------------------------------------------------------------
    async def put_contact(self, tenant_id: str, contact_id: str, data: ContactIn) -> Contact:
        contact = Contact(**data.model_dump(), id=contact_id, updated_at=now())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.contact(tenant_id, contact_id), contact.model_dump_json())
            pipe.zadd(self.keys.contact_index(tenant_id), {contact_id: 0})
            await pipe.execute()
        return contact

    async def put_contacts(self, tenant_id: str, contacts: list[Contact]) -> None:
        if not contacts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in contacts:
                pipe.set(self.keys.contact(tenant_id, c.id), c.model_dump_json())
            pipe.zadd(self.keys.contact_index(tenant_id), dict.fromkeys((c.id for c in contacts), 0))
            await pipe.execute()

    async def contact_ids(self, tenant_id: str, after: str = "", count: int = 1000) -> list[str]:
        """Up to ``count`` of the tenant's contact ids after ``after`` (empty: from the start), in id
        order, from the per-tenant index: paging through millions without scanning the keyspace."""
        start = f"({after}" if after else "-"
        ids = await self.redis.zrange(
            self.keys.contact_index(tenant_id), start, "+", bylex=True, offset=0, num=count
        )
        return [i.decode() for i in ids]

    async def get_contacts(self, tenant_id: str, contact_ids: list[str]) -> list[Contact | None]:
        """Many contacts in one MGET, in the order asked (None where there is none)."""
        if not contact_ids:
            return []
        raws = await self.redis.mget([self.keys.contact(tenant_id, c) for c in contact_ids])
        return [Contact.model_validate_json(r) if r else None for r in raws]

    async def get_contact(self, tenant_id: str, contact_id: str) -> Contact | None:
        return (await self.contacts_of([(tenant_id, contact_id)]))[0]

    async def contacts_of(self, asked: list[tuple[str, str]]) -> list[Contact | None]:
        """Contacts ``(tenant, contact id)`` of any tenants, in the order asked, in one round trip
        shared with concurrent callers."""
        raws = await self._auto.get_many([(t, self.keys.contact(t, c)) for t, c in asked])
        return [Contact.model_validate_json(r) if r else None for r in raws]

    async def delete_contact(self, tenant_id: str, contact_id: str) -> bool:
        """Erase a member everywhere Herald keeps them in Redis: the profile, its addresses on the
        tenant's suppression list (entries and their details), its message log and its frequency-cap
        counters. What stays: Kafka records that carry its addresses until the topics' retention
        removes them, delivery ledger entries (keyed by a hash, holding no address) and notification
        statuses (no address) until their TTLs."""
        contact = await self.get_contact(tenant_id, contact_id)
        if contact is None:
            return False
        tenant = await self.get_tenant(tenant_id)
        categories = list((tenant.frequency_caps or {}) if tenant is not None else {})
        addresses = [a.lower() for a in (contact.email, contact.phone) if a]
        addresses += [t.token.lower() for t in contact.push_tokens]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.contact(tenant_id, contact_id))
            pipe.delete(self.keys.message_log(tenant_id, contact_id))
            pipe.zrem(self.keys.contact_index(tenant_id), contact_id)
            for category in categories:
                pipe.delete(self.keys.frequency(tenant_id, contact_id, category))
            await pipe.execute()
        await self.suppressions.remove(tenant_id, addresses)
        return True

    async def remove_push_token(self, tenant_id: str, contact_id: str, token: str) -> bool:
        """Drop one push token from a contact (the provider says it is gone); True when it was removed."""

        def change(contact: Contact) -> dict[str, Any] | None:
            kept = [t for t in contact.push_tokens if t.token != token]
            return {"push_tokens": kept} if len(kept) < len(contact.push_tokens) else None

        return await self._modify_contact(tenant_id, contact_id, change) is not None

    async def set_category_preferences(
        self, tenant_id: str, contact_id: str, categories: dict[str, bool]
    ) -> Contact | None:
        """Merge ``categories`` into the contact's category preferences (an unsubscribe link, the
        preferences page); the updated contact, or None when there is no such contact."""

        def change(contact: Contact) -> dict[str, Any] | None:
            merged = {**contact.preferences.categories, **categories}
            if merged == contact.preferences.categories:
                return None
            prefs = contact.preferences.model_copy(update={"categories": merged})
            return {"preferences": prefs}

        changed = await self._modify_contact(tenant_id, contact_id, change)
        return changed or await self.get_contact(tenant_id, contact_id)

    async def _modify_contact(
        self, tenant_id: str, contact_id: str, change: Callable[[Contact], dict[str, Any] | None]
    ) -> Contact | None:
        """Read-modify-write of one contact under WATCH, so a concurrent update is never overwritten.
        ``change`` returns the fields to replace, or None for no change; the written contact or None."""
        key = self.keys.contact(tenant_id, contact_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        return None
                    contact = Contact.model_validate_json(raw)
                    update = change(contact)
                    if update is None:
                        return None
                    updated = contact.model_copy(update={**update, "updated_at": now()})
                    pipe.multi()
                    pipe.set(key, updated.model_dump_json())
                    await pipe.execute()
                    return updated
                except WatchError:
                    continue

    # templates ----------------------------------------------------------------------------------------
    async def put_template(self, tenant_id: str, template_id: str, data: TemplateIn) -> Template:
        key = self.keys.template(tenant_id, template_id)
        previous = await self.redis.get(key)
        version = Template.model_validate_json(previous).version + 1 if previous else 1
        template = Template(**data.model_dump(), id=template_id, version=version, updated_at=now())
        await self.redis.set(key, template.model_dump_json())
        return template

    async def get_template(self, tenant_id: str, template_id: str) -> Template | None:
        raw = await self.redis.get(self.keys.template(tenant_id, template_id))
        return Template.model_validate_json(raw) if raw else None

    async def delete_template(self, tenant_id: str, template_id: str) -> bool:
        return bool(await self.redis.delete(self.keys.template(tenant_id, template_id)))

    # suppressions (herald_common.suppressions) -------------------------------------------------------
    async def is_suppressed(self, tenant_id: str, address: str) -> bool:
        return await self.suppressions.check(tenant_id, address) is not None

    async def suppression_reason(self, tenant_id: str, address: str) -> str | None:
        """Why ``address`` is suppressed (``unknown`` for entries without details); None if it is not."""
        return await self.suppressions.check(tenant_id, address)

    async def suppress(
        self,
        tenant_id: str,
        address: str,
        *,
        reason: str = MANUAL,
        source: str = "api",
        channel: str | None = None,
        note: str | None = None,
    ) -> None:
        await self.suppressions.add(
            tenant_id, address, reason=reason, source=source, channel=channel, note=note
        )
