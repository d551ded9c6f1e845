"""Client idempotency (``Idempotency-Key``), 24 h per tenant.

The first request with a key claims it (in flight); a replay with the same body gets the first
response back; the same key with a different body is 422; a replay while the first is still in
flight is 409. A request that fails before it was accepted releases its key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from herald_gateway.problems import ProblemError

INFLIGHT_TTL_S = 60


@dataclass(slots=True)
class Stored:
    status: int
    body: bytes


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class Idempotency:
    def __init__(self, redis: aioredis.Redis, key: str, fp: str, ttl_s: int) -> None:
        self.redis, self.key, self.fp, self.ttl_s = redis, key, fp, ttl_s

    async def claim(self) -> Stored | None:
        """None when this request owns the key; the stored response when it is a replay."""
        marker = orjson.dumps({"state": "inflight", "fp": self.fp})
        if await self.redis.set(self.key, marker, nx=True, ex=INFLIGHT_TTL_S):
            return None
        raw = await self.redis.get(self.key)
        if raw is None:  # expired between the two calls: try once more
            if await self.redis.set(self.key, marker, nx=True, ex=INFLIGHT_TTL_S):
                return None
            raise ProblemError(409, "a request with this Idempotency-Key is in flight")
        record = orjson.loads(raw)
        if record["fp"] != self.fp:
            raise ProblemError(422, "this Idempotency-Key was used with a different request body")
        if record["state"] == "inflight":
            raise ProblemError(409, "a request with this Idempotency-Key is in flight")
        return Stored(record["status"], record["body"].encode())

    async def complete(self, status: int, body: bytes) -> None:
        record = {"state": "done", "fp": self.fp, "status": status, "body": body.decode()}
        await self.redis.set(self.key, orjson.dumps(record), ex=self.ttl_s)

    async def release(self) -> None:
        await self.redis.delete(self.key)
