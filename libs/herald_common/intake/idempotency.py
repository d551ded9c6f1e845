"""Client idempotency keys, one scheme for single requests and batch items (one namespace per tenant).

A key is reserved atomically before anything is produced: ``SET NX`` of an in-flight marker that
holds the request's fingerprint and a token of the reservation's own. Then:

- a key reserved by another request still in flight → :class:`IdempotencyInFlight` (409);
- a key known with another fingerprint → :class:`IdempotencyMismatch` (422);
- a key known with the same fingerprint → the first result, replayed.

The fingerprint is SHA-256 over canonical JSON of the validated request (sorted keys, no
``idempotency_key``): the same request re-serialised with other key order or spacing is a replay, and a
single ``POST`` and a batch item with the same content are the same request. A reservation is released
(only if it is still this one's) when nothing was produced (refused before the write); it lapses by
itself after ``INFLIGHT_TTL_S``.

A write that failed after it started (the broker's acknowledgement lost: the records may or may not be
in Kafka) leaves the key **unsure**, remembering the notification ids it was written under. A retry
with the same key and request takes the key over and writes again under the *same* ids, so whatever
the first attempt left in Kafka and the retry lead to the same deliveries, which the senders' ledger
sends once: a client retrying a 503 never gets a message twice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel

from herald_common.redisio import execute, register_script

INFLIGHT_TTL_S = 60

# One round trip per key: reserve it, or take over an unsure one of the same request (keeping the ids
# it was written under), or return what holds it.
_RESERVE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
local held = redis.call('GET', KEYS[1])
local doc = cjson.decode(held)
if doc['state'] == 'unsure' and doc['fp'] == ARGV[3] then
  local mine = cjson.decode(ARGV[1])
  mine['result'] = doc['result']
  redis.call('SET', KEYS[1], cjson.encode(mine), 'EX', ARGV[2])
  return {'retake', cjson.encode(doc['result'])}
end
return held
"""
# Release, or mark unsure, only a reservation that is still ours (not one taken after ours lapsed).
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if not held or cjson.decode(held)['token'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
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
    """One key reserved for this request: ``token`` is its reservation's own, so release touches only
    that one. ``retake`` is the result (id, lane) an unsure earlier attempt was written under."""

    key: str
    fp: str
    token: str
    retake: dict[str, Any] | None = None


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self.redis, self.ttl_s = redis, ttl_s
        self._reserve = register_script(redis, _RESERVE)
        self._release = register_script(redis, _RELEASE)

    async def reserve(self, wanted: list[tuple[str, str]]) -> list[Claim | dict[str, Any]]:
        """Reserve each (redis key, fingerprint) at once: per key, our :class:`Claim`, or the record
        that holds it (``state`` inflight or done, its ``fp``, and when done the ``result``). Claims
        are kept even when another key is held: the caller releases them."""
        if not wanted:
            return []
        tokens = [os.urandom(8).hex() for _ in wanted]
        async with self.redis.pipeline(transaction=False) as pipe:
            for (key, fp), token in zip(wanted, tokens, strict=True):
                marker = orjson.dumps({"state": "inflight", "fp": fp, "token": token})
                await self._reserve(keys=[key], args=[marker, INFLIGHT_TTL_S, fp], client=pipe)
            found = await execute(self.redis, pipe)  # its script checked only until loaded
        out: list[Claim | dict[str, Any]] = []
        for (key, fp), token, held in zip(wanted, tokens, found, strict=True):
            if held is None:
                out.append(Claim(key, fp, token))
            elif isinstance(held, list):  # ["retake", result]
                out.append(Claim(key, fp, token, orjson.loads(held[1])))
            else:
                out.append(orjson.loads(held))
        return out

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
        """Nothing was written: the keys are free again."""
        await self._settle([(claim, "") for claim in claims])

    async def unsure(self, attempted: list[tuple[Claim, dict[str, Any]]]) -> None:
        """The write may have happened: keep each key with the result (id, lane) it was attempted under,
        for a retry of the same request to write again under the same id."""
        await self._settle(
            [
                (claim, orjson.dumps({"state": "unsure", "fp": claim.fp, "result": result}).decode())
                for claim, result in attempted
            ]
        )

    async def _settle(self, outcome: list[tuple[Claim, str]]) -> None:
        if not outcome:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for claim, record in outcome:
                await self._release(keys=[claim.key], args=[claim.token, record, self.ttl_s], client=pipe)
            await execute(self.redis, pipe)
