"""Client idempotency keys, one scheme for single requests and batch items (one namespace per tenant).

A key is reserved atomically before anything is produced: ``SET NX`` of an in-flight marker that
holds the request's fingerprint and a token of the reservation's own. Then:

- a key reserved by another request still in flight → :class:`IdempotencyInFlight` (409);
- a key known with another fingerprint → :class:`IdempotencyMismatch` (422);
- a key known with the same fingerprint → the first result, replayed.

The fingerprint is SHA-256 over canonical JSON of the validated request (sorted keys, no
``idempotency_key``): the same request re-serialised with other key order or spacing is a replay, and a
single ``POST`` and a batch item with the same content are the same request. A reservation is released
(only if it is still this one's) when the produce fails; it lapses by itself after ``INFLIGHT_TTL_S``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel

INFLIGHT_TTL_S = 60

# One round trip per key: reserve it, or return what holds it.
_RESERVE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""
# Release only a reservation that is still ours (not one taken after ours lapsed).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class IdempotencyError(Exception):
    """An idempotency key that cannot be used now; ``index`` is the item's place in a batch."""

    def __init__(self, key: str, index: int, message: str) -> None:
        super().__init__(message)
        self.key, self.index, self.message = key, index, message


class IdempotencyInFlight(IdempotencyError):
    def __init__(self, key: str, index: int = 0) -> None:
        super().__init__(key, index, "a request with this idempotency key is in flight; retry shortly")


class IdempotencyMismatch(IdempotencyError):
    def __init__(self, key: str, index: int = 0) -> None:
        super().__init__(key, index, "this idempotency key was used with a different request")


def fingerprint(request: BaseModel) -> str:
    """SHA-256 over the request's canonical JSON, its ``idempotency_key`` left out."""
    doc = request.model_dump(mode="json", exclude={"idempotency_key"}, exclude_none=True)
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(slots=True)
class Claim:
    """One key reserved for this request: ``marker`` is what it wrote, so release deletes only that."""

    key: str
    fp: str
    marker: bytes


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self.redis, self.ttl_s = redis, ttl_s
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)

    async def reserve(self, wanted: list[tuple[str, str]]) -> list[Claim | dict[str, Any]]:
        """Reserve each (redis key, fingerprint) at once: per key, our :class:`Claim`, or the record
        that holds it (``state`` inflight or done, its ``fp``, and when done the ``result``). Claims
        are kept even when another key is held: the caller releases them."""
        if not wanted:
            return []
        markers = [
            orjson.dumps({"state": "inflight", "fp": fp, "token": os.urandom(8).hex()}) for _, fp in wanted
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for (key, _), marker in zip(wanted, markers, strict=True):
                await self._reserve(keys=[key], args=[marker, INFLIGHT_TTL_S], client=pipe)
            found = await pipe.execute()
        return [
            Claim(key, fp, marker) if held is None else orjson.loads(held)
            for (key, fp), marker, held in zip(wanted, markers, found, strict=True)
        ]

    async def complete(self, done: list[tuple[Claim, dict[str, Any]]]) -> None:
        """Remember each claim's result for the TTL: from now on its key replays it."""
        if not done:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for claim, result in done:
                record = {"state": "done", "fp": claim.fp, "result": result}
                pipe.set(claim.key, orjson.dumps(record), ex=self.ttl_s)
            await pipe.execute()

    async def release(self, claims: list[Claim]) -> None:
        if not claims:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                await self._release(keys=[claim.key], args=[claim.marker], client=pipe)
            await pipe.execute()
