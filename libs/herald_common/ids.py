"""Identifiers: time-ordered notification ids, deterministic delivery ids, partition keys."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

_NID = re.compile(r"^([a-z])_([0-9a-f]{11})([0-9a-f]{16})([0-9a-f]{12})$")


class NotificationIds:
    """Notification ids the gateway can recognise as its own without a lookup.

    ``n_`` + 11 hex digits of milliseconds (sortable by creation) + 16 random hex digits + a 48-bit
    HMAC over the tenant and the rest. ``GET /v1/notifications/{id}`` answers "accepted" for an id it
    issued to this tenant before any status is recorded, so intake needs no Redis write; an id of another
    tenant, or a made-up one, is simply not found.
    """

    kind = "n"  # the id's prefix; another kind (events: ``e``) signs in its own domain

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, tenant_id: str, body: str) -> str:
        # Keyed BLAKE2b is a MAC in one call (no HMAC double hashing): cheap enough for every request.
        domain = tenant_id if self.kind == "n" else f"{self.kind}\x1f{tenant_id}"
        return hashlib.blake2b(f"{domain}\x1f{body}".encode(), key=self._secret, digest_size=6).hexdigest()

    def new(self, tenant_id: str) -> str:
        body = f"{int(time.time() * 1000):011x}{os.urandom(8).hex()}"
        return f"{self.kind}_{body}{self._mac(tenant_id, body)}"

    def derived(self, tenant_id: str, seed: str, at: float) -> str:
        """Deterministic: the same tenant, seed and time always give the same (valid, signed) id, so
        a redelivered event publishes its notifications under the ids it had the first time."""
        body = f"{int(at * 1000):011x}{hashlib.sha256(seed.encode()).hexdigest()[:16]}"
        return f"{self.kind}_{body}{self._mac(tenant_id, body)}"

    def issued_at(self, notification_id: str, tenant_id: str) -> float | None:
        """When this id was issued to this tenant, or None if it was not."""
        match = _NID.match(notification_id)
        if match is None or match.group(1) != self.kind:
            return None
        body = match.group(2) + match.group(3)
        if not hmac.compare_digest(match.group(4), self._mac(tenant_id, body)):
            return None
        return int(match.group(2), 16) / 1000


class EventIds(NotificationIds):
    """Event ids (``e_…``): the same scheme, signed in a domain of their own (never a notification's)."""

    kind = "e"

    @classmethod
    def like(cls, ids: NotificationIds) -> EventIds:
        """Event ids signed with the same installation secret as ``ids``."""
        return cls(ids._secret)


def id_secret_from_setting(raw: str) -> bytes:
    """The signing key derived from ``HERALD_ID_SECRET`` (gateway and router derive the same)."""
    return hashlib.sha256(b"herald-notification-ids\x1f" + raw.encode()).digest()


async def shared_secret(redis: aioredis.Redis, key: str) -> bytes:
    """The installation's id secret: created at random by the first gateway (``SET NX``) and read by
    every other one, so ids stay valid across restarts and any rotation of other credentials."""
    await redis.set(key, os.urandom(32), nx=True)
    secret = await redis.get(key)
    if not secret:
        raise RuntimeError(f"the id secret at {key} could not be read back")
    return bytes(secret)


async def wait_for_shared_secret(redis: aioredis.Redis, key: str) -> bytes:
    """:func:`shared_secret`, waiting out a Redis that is not up yet (a service starting before it)."""
    delay = 0.2
    while True:
        try:
            return await shared_secret(redis, key)
        except (RedisError, OSError):
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


def delivery_id(notification_id: str, channel: str, address: str) -> str:
    """Deterministic: the same notification, channel and address always give the same delivery id."""
    digest = hashlib.sha256(f"{notification_id}\x1f{channel}\x1f{address}".encode()).hexdigest()
    return f"d_{digest[:32]}"


def partition_key(tenant_id: str, recipient: str) -> bytes:
    """Per-recipient order: every record for one tenant's contact lands on one partition."""
    return f"{tenant_id}:{recipient}".encode()
