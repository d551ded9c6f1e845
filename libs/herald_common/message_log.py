"""A contact's message log (``GET /v1/contacts/{id}/notifications``): what support staff look at.

The tracker's observer adds a notification to a per-contact sorted set (member: notification id,
score: the time of its first status event) the first time one of its records appears, and trims the
set to ``HERALD_MESSAGE_LOG_RETENTION_DAYS`` and ``HERALD_MESSAGE_LOG_MAX_ENTRIES`` in the same
script call. Nothing else is copied: a page is one ZREVRANGE and one HGETALL per entry of the
notifications' status hashes (herald_common.status), in one pipeline, so an entry always shows the
notification's current status. An entry whose status has expired (``HERALD_STATUS_TTL_S``) leaves the
log when read. Only notifications to a contact (not to inline addresses) are logged; erasing the
contact erases its log.

Paging is newest first. The cursor names the last entry of a page (``<score in ms>.<id>``): the next
page starts after that entry, or, when it has left the log since, after its time.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

import redis.asyncio as aioredis

from herald_common.redisio import Build, Keys, register_script
from herald_common.stats import RecordSettings
from herald_common.status import Folded, view
from herald_common.wire import StatusEvent

CURSOR_PATTERN: Final = r"^[0-9]{1,16}\.[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
_CURSOR = re.compile(CURSOR_PATTERN)
PAGE_MAX: Final = 100
_ORIGIN = ("contact_id", "template_id", "category", "campaign_id", "trigger", "event_id")


# Add a notification at its first time (a lower score wins), drop what is past the retention or over
# the most entries kept, and keep the log alive as long as its newest entry: one call per new entry.
_LOG = """
redis.call('ZADD', KEYS[1], 'LT', ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('EXPIRE', KEYS[1], ARGV[5])
"""


def parse_cursor(cursor: str) -> tuple[float, str] | None:
    if not _CURSOR.match(cursor):
        return None
    ms, nid = cursor.split(".", 1)
    return int(ms) / 1000, nid


class MessageLog:
    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: RecordSettings) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_s = settings.message_log_retention_days * 86400
        self.max_entries = settings.message_log_max_entries
        self._log = register_script(redis, _LOG)

    def plan(self, event: StatusEvent, folded: Folded) -> Build | None:
        """The tracker's observer: log a notification the first time one of its records appears."""
        origin = folded.origin
        if not folded.applied or folded.previous is not None or origin is None or not origin.contact_id:
            return None
        keys = [self.keys.message_log(event.tenant_id, origin.contact_id)]
        args = [
            event.at,
            event.notification_id,
            time.time() - self.retention_s,
            self.max_entries,
            self.retention_s,
        ]
        return lambda pipe: self._log(keys=keys, args=args, client=pipe)

    async def page(
        self, tenant_id: str, contact_id: str, cursor: tuple[float, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        key = self.keys.message_log(tenant_id, contact_id)
        if cursor is None:
            found = await self.redis.zrevrange(key, 0, limit - 1, withscores=True)
        else:
            at, after = cursor
            rank = await self.redis.zrevrank(key, after)
            if rank is not None:
                found = await self.redis.zrevrange(key, rank + 1, rank + limit, withscores=True)
            else:
                found = await self.redis.zrevrangebyscore(
                    key, f"({at}", "-inf", start=0, num=limit, withscores=True
                )
        async with self.redis.pipeline(transaction=False) as pipe:
            for nid, _ in found:
                pipe.hgetall(self.keys.notification(tenant_id, nid.decode()))
            hashes = await pipe.execute() if found else []
        entries: list[dict[str, Any]] = []
        gone: list[bytes] = []
        for (nid, score), raw in zip(found, hashes, strict=True):
            if not raw:
                gone.append(nid)
                continue
            entries.append(entry(nid.decode(), score, {k.decode(): v for k, v in raw.items()}))
        if gone:
            await self.redis.zrem(key, *gone)
        next_cursor = None
        if len(found) == limit:
            nid, score = found[-1]
            next_cursor = f"{round(score * 1000)}.{nid.decode()}"
        return entries, next_cursor


def entry(notification_id: str, first_seen: float, fields: dict[str, bytes]) -> dict[str, Any]:
    """One log entry: the status view with its origin flattened and when it last changed."""
    doc = view(notification_id, first_seen, fields)
    origin = doc.pop("origin", {})
    doc.update({k: origin[k] for k in _ORIGIN if origin.get(k)})
    updated = [c.get("updated_at") for c in doc["channels"].values()]
    updated = [u for u in updated if isinstance(u, int | float)]
    doc["updated_at"] = max(updated, default=first_seen)
    return doc
