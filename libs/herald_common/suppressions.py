"""A tenant's suppression list: addresses Herald never sends to, each with why, who said so, and when.

Three Redis structures per tenant, written together in one MULTI:

- ``suppressed`` (a set of lower-cased addresses): membership, the router's hot-path check, unchanged
  from before entries had details;
- ``suppression-info`` (a hash, address → JSON ``{channel, reason, source, note, at}``): the details;
- ``suppression-index:<channel>`` (a sorted set, all scores 0): the channel's addresses in byte order,
  which is how ``GET /v1/suppressions`` pages (the cursor is the last address, so paging is stable
  while entries come and go).

Addresses suppressed before entries had details are in the set only: they keep suppressing, read with
reason and source ``unknown``, and are listed once ``index_legacy`` has given them an entry (each
listing does when the set has more members than the details hash). ``check`` reads the set and the
details in one round trip (shared with concurrent callers through
:class:`~herald_common.redisio.AutoPipeline`). Addresses never reach a log line from here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from herald_common.policy import MANUAL, SUPPRESSION_CODES
from herald_common.redisio import Keys, auto_pipeline, slot_chunks
from herald_common.settings import CHANNELS, Channel

UNKNOWN: Final = "unknown"  # suppressed before entries had details
REASONS: Final = SUPPRESSION_CODES
Reason = Literal["manual", "unsubscribed", "complaint", "bounced", "invalid_address"]

# What an address looks like on each channel (the API's path and import patterns).
ADDRESS_PATTERNS: Final[dict[str, str]] = {
    "email": r"^[!-.0-?A-~]{1,64}@[!-.0-?A-~]{1,253}$",
    "sms": r"^\+[1-9][0-9]{6,14}$",
    "push": r"^[A-Za-z0-9_\-:.]{8,4096}$",
}
_COMPILED = {channel: re.compile(p) for channel, p in ADDRESS_PATTERNS.items()}
PAGE_MAX: Final = 500


def channel_of(address: str) -> Channel:
    """The channel an address belongs to: an email address, an E.164 number, else a push token."""
    if "@" in address:
        return "email"
    if _COMPILED["sms"].match(address):
        return "sms"
    return "push"


def valid_address(channel: str, address: str) -> bool:
    pattern = _COMPILED.get(channel)
    return pattern is not None and pattern.match(address) is not None


@dataclass(frozen=True, slots=True)
class Entry:
    channel: str
    address: str
    reason: str
    source: str
    at: float | None
    note: str | None = None

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "channel": self.channel,
            "address": self.address,
            "reason": self.reason,
            "source": self.source,
            "created_at": self.at,
        }
        if self.note:
            out["note"] = self.note
        return out


def _entry(address: str, raw: bytes | None) -> Entry:
    if not raw:
        return Entry(channel_of(address), address, UNKNOWN, UNKNOWN, None)
    info = orjson.loads(raw)
    return Entry(info["channel"], address, info["reason"], info["source"], info.get("at"), info.get("note"))


class Suppressions:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._auto = auto_pipeline(redis)

    async def check(self, tenant_id: str, address: str) -> str | None:
        """Why ``address`` is suppressed (``unknown`` for an entry without details), None if it is not.
        One round trip, shared with concurrent callers."""
        return (await self.check_many([(tenant_id, address)]))[0]

    async def check_many(self, asked: list[tuple[str, str]]) -> list[str | None]:
        """:meth:`check` for many ``(tenant, address)`` pairs, in one round trip."""
        lowered = [address.lower() for _, address in asked]
        chunks = slot_chunks([tenant_id for tenant_id, _ in asked])  # per chunk: SMISMEMBER and HMGET

        def build(pipe: Any) -> None:
            for tenant_id, chunk in chunks:
                addresses = [lowered[i] for i in chunk]
                pipe.smismember(self.keys.suppressions(tenant_id), addresses)
                pipe.hmget(self.keys.suppression_info(tenant_id), addresses)

        replies = await self._auto.call_many(build) if asked else []
        reasons: list[str | None] = [None] * len(asked)
        for n, (_, chunk) in enumerate(chunks):
            found, infos = replies[2 * n], replies[2 * n + 1]
            for i, member, raw in zip(chunk, found, infos, strict=True):
                if member:
                    reasons[i] = _entry(lowered[i], raw).reason
        return reasons

    async def add(
        self,
        tenant_id: str,
        address: str,
        *,
        channel: str | None = None,
        reason: str = MANUAL,
        source: str = "api",
        note: str | None = None,
        at: float | None = None,
    ) -> Entry:
        entry = Entry(
            channel or channel_of(address), address.lower(), reason, source, at or time.time(), note
        )
        await self.add_many(tenant_id, [entry])
        return entry

    async def add_many(self, tenant_id: str, entries: Iterable[Entry]) -> None:
        member, info = self.keys.suppressions(tenant_id), self.keys.suppression_info(tenant_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for e in entries:
                details = {"channel": e.channel, "reason": e.reason, "source": e.source, "at": e.at}
                if e.note:
                    details["note"] = e.note
                pipe.sadd(member, e.address)
                pipe.hset(info, e.address, orjson.dumps(details))
                pipe.zadd(self.keys.suppression_index(tenant_id, e.channel), {e.address: 0})
            await pipe.execute()

    async def get(self, tenant_id: str, channel: str, address: str) -> Entry | None:
        a = address.lower()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(self.keys.suppressions(tenant_id), a)
            pipe.hget(self.keys.suppression_info(tenant_id), a)
            found, raw = await pipe.execute()
        entry = _entry(a, raw) if found else None
        return entry if entry is not None and entry.channel == channel else None

    async def remove(self, tenant_id: str, addresses: Iterable[str], only_reason: str | None = None) -> int:
        """Lift the suppression of ``addresses`` (all of them, or only those suppressed for
        ``only_reason``); how many were suppressed."""
        wanted = [a.lower() for a in addresses]
        if not wanted:
            return 0
        if only_reason is not None:
            raws = await self.redis.hmget(self.keys.suppression_info(tenant_id), wanted)
            wanted = [
                a for a, raw in zip(wanted, raws, strict=True) if raw and _entry(a, raw).reason == only_reason
            ]
            if not wanted:
                return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(self.keys.suppressions(tenant_id), *wanted)
            pipe.hdel(self.keys.suppression_info(tenant_id), *wanted)
            for channel in CHANNELS:
                pipe.zrem(self.keys.suppression_index(tenant_id, channel), *wanted)
            removed, *_ = await pipe.execute()
        return int(removed)

    async def index_legacy(self, tenant_id: str) -> None:
        """Give addresses suppressed before entries had details an entry (reason and source
        ``unknown``) and index them, so that listing shows them. Cheap when there are none (the set
        and the details hash have as many members); repeated or concurrent runs do no harm."""
        member, info = self.keys.suppressions(tenant_id), self.keys.suppression_info(tenant_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(member)
            pipe.hlen(info)
            members, detailed = await pipe.execute()
        if members <= detailed:
            return
        async for batch in _chunks(self.redis.sscan_iter(member, count=1000), 1000):
            known = await self.redis.hmget(info, batch)
            missing = [a.decode() for a, raw in zip(batch, known, strict=True) if raw is None]
            if missing:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for a in missing:
                        channel = channel_of(a)
                        details = {"channel": channel, "reason": UNKNOWN, "source": UNKNOWN, "at": None}
                        pipe.hsetnx(info, a, orjson.dumps(details))
                        pipe.zadd(self.keys.suppression_index(tenant_id, channel), {a: 0})
                    await pipe.execute()

    async def page(
        self,
        tenant_id: str,
        channel: str | None,
        reason: str | None,
        cursor: tuple[str, bytes] | None,
        limit: int,
    ) -> tuple[list[Entry], tuple[str, bytes] | None]:
        """Up to ``limit`` entries after ``cursor`` (channel, last address), channels in their declared
        order, addresses in byte order; and the cursor of the next page (None at the end). A page
        filtered by reason may hold fewer entries than ``limit`` while more follow."""
        await self.index_legacy(tenant_id)
        channels: list[str] = [channel] if channel else list(CHANNELS)
        if cursor is not None:
            if cursor[0] not in channels:
                return [], None
            channels = channels[channels.index(cursor[0]) :]
        after: bytes | None = cursor[1] if cursor else None
        found: list[Entry] = []
        budget = limit * 10  # addresses looked at per page when filtering by reason
        info = self.keys.suppression_info(tenant_id)
        for ch in channels:
            index = self.keys.suppression_index(tenant_id, ch)
            while True:
                start = b"(" + after if after is not None else b"-"
                want = min(limit - len(found), budget) if reason is None else min(budget, 200)
                batch: list[bytes] = await self.redis.zrangebylex(index, start, b"+", start=0, num=want)
                if not batch:
                    break
                raws = await self.redis.hmget(info, batch)
                for a, raw in zip(batch, raws, strict=True):
                    after, budget = a, budget - 1
                    e = _entry(a.decode(), raw)
                    if e.channel == ch and (reason is None or e.reason == reason):
                        found.append(e)
                    if len(found) >= limit or budget <= 0:
                        return found, (ch, after)
                if len(batch) < want:
                    break
            after = None
        return found, None


async def _chunks(items: Any, size: int) -> Any:
    batch: list[bytes] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class SuppressionIn(BaseModel):
    """``PUT /v1/suppressions/{channel}/{address}`` (the body may be left out: reason ``manual``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason = MANUAL
    note: Annotated[str, StringConstraints(max_length=500)] | None = None


class SuppressionLine(SuppressionIn):
    """One line of ``POST /v1/suppressions:import`` (NDJSON)."""

    channel: Channel
    address: Annotated[str, StringConstraints(min_length=1, max_length=4096)]

    @model_validator(mode="after")
    def _address_of_channel(self) -> SuppressionLine:
        if not valid_address(self.channel, self.address):
            raise ValueError(f"address is not a valid {self.channel} address")
        return self


def line_schema() -> dict[str, Any]:
    """The JSON Schema of an import line, with the address pattern of each channel."""
    schema = SuppressionLine.model_json_schema()
    schema["oneOf"] = [
        {"properties": {"channel": {"const": c}, "address": {"pattern": p}}}
        for c, p in ADDRESS_PATTERNS.items()
    ]
    return schema
