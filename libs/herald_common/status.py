"""Per-notification status in Redis: written by the tracker, read by ``GET /v1/notifications/{id}``.

One hash per notification, created by its first status event (until then the gateway answers
"accepted" for ids it issued). Field ``n`` holds the notification-level record, ``c:<channel>`` one
record per channel; ``r:<field>`` holds that record's rank so that a late, older event never
overwrites a newer one (events for one notification can arrive out of order across partitions).
The overall status is derived when read, never stored.

A channel's ``attempts``, ``provider`` and ``provider_message_id`` are sticky: a receipt that says
"delivered" without them keeps what the sender reported, and a late "sent" that loses on rank still
fills them in. ``retrying`` (a transient failure, next attempt at ``next_attempt_at``) ranks with
``sending`` and reads as ``sending`` overall.

The overall status (:func:`overall`) is derived from the channels' when read:

- no channel yet: the notification-level status (``accepted``, or e.g. ``failed`` with its reason);
- ``partially_failed`` when the channels disagree: one reached ``sent`` or ``delivered`` while another
  ended ``failed``, ``bounced`` or ``expired`` (not one that failed with ``fell_back``: routing ``first``
  moved on from it to the channel that reached the member). It is said as soon as both are known (a
  failed channel is final, so the notification can no longer be wholly successful), even while a third
  is in progress;
- otherwise the most advanced: ``delivered``, then ``sent``, then ``sending`` (``retrying`` included);
  then ``scheduled`` or ``accepted`` while any channel waits (``queued`` reads as ``accepted``);
- when every channel ended without reaching anyone: ``bounced``, ``failed``, ``expired``,
  ``cancelled``, ``capped``, else ``suppressed``.

``suppressed``, ``capped`` and ``cancelled`` channels are policy outcomes, not failures: email ``sent``
with SMS ``suppressed`` reads ``sent``. ``scheduled`` (waiting for ``send_at``) and ``held`` (quiet
hours) are notification-level, with ``next_attempt_at`` saying when it is released; ``capped`` is
per channel, ``cancelled`` either. Each record may carry a ``reason_code`` (herald_common.policy).
Engagement (opens, clicks: herald_common.engagement) is kept beside the records, never in their rank.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from herald_common.policy import FELL_BACK
from herald_common.redisio import Build, auto_pipeline, register_script
from herald_common.wire import Origin, StatusEvent

RANK = {
    "accepted": 0,
    "scheduled": 0,
    "held": 0,
    "queued": 1,
    "sending": 2,
    "retrying": 2,
    "sent": 3,
    "delivered": 4,
    "bounced": 4,
    "failed": 4,
    "suppressed": 4,
    "expired": 4,
    "cancelled": 4,
    "capped": 4,
}
TERMINAL = frozenset(s for s, r in RANK.items() if r == 4)
REACHED = frozenset({"sent", "delivered"})
FAILED = frozenset({"failed", "bounced", "expired"})
# Every overall status a tenant can read (the channel statuses, less the internal ones, plus this one).
OVERALL = (
    "accepted",
    "scheduled",
    "held",
    "sending",
    "sent",
    "delivered",
    "partially_failed",
    "bounced",
    "failed",
    "expired",
    "cancelled",
    "capped",
    "suppressed",
)

_UPDATE = """
local sticky = {'attempts', 'provider', 'provider_message_id'}
local function fill(into, from)
  local changed = false
  for _, k in ipairs(sticky) do
    if into[k] == nil and from[k] ~= nil then into[k] = from[k]; changed = true end
  end
  return changed
end
local origin = ARGV[5]
if origin ~= '' then
  redis.call('HSETNX', KEYS[1], 'o', origin)
else
  origin = redis.call('HGET', KEYS[1], 'o') or ''
end
local cur = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1])
local old = redis.call('HGET', KEYS[1], ARGV[1])
local previous = ''
if old then previous = cjson.decode(old)['status'] or '' end
if cur and tonumber(cur) > tonumber(ARGV[3]) then
  if old then
    local o = cjson.decode(old)
    if fill(o, cjson.decode(ARGV[2])) then redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(o)) end
  end
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {0, previous, origin}
end
local record = ARGV[2]
if old then
  local n = cjson.decode(record)
  if fill(n, cjson.decode(old)) then record = cjson.encode(n) end
end
redis.call('HSET', KEYS[1], ARGV[1], record, 'r:' .. ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, previous, origin}
"""


@dataclass(frozen=True, slots=True)
class Folded:
    """What folding one status event did: whether it was at least as new as what was stored, the
    status its record had before (None when new), and the notification's origin (from this event or an
    earlier one; receipts and cancellations carry none of their own)."""

    applied: bool
    status: str
    previous: str | None
    origin: Origin | None

    @property
    def changed(self) -> bool:
        """True the first time the record reaches this status: a replayed event is not a change."""
        return self.applied and self.previous != self.status


# An observer plans the Redis commands an event calls for, given what folding it changed (None: none);
# the tracker sends every observer's commands for an event in one pipeline.
StatusObserver = Callable[[StatusEvent, Folded], Build | None]


class StatusStore:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._update = register_script(redis, _UPDATE)
        self._auto = auto_pipeline(redis)

    async def apply(self, key: str, event: StatusEvent) -> bool:
        """Fold one event in; returns False when it was older than what is stored."""
        return (await self.fold(key, event)).applied

    async def fold(self, key: str, event: StatusEvent) -> Folded:
        """Fold one event in and say what changed (see :class:`Folded`)."""
        return (await self.fold_many([(key, event)]))[0]

    async def fold_many(self, items: list[tuple[str, StatusEvent]]) -> list[Folded]:
        """Fold events in, in order (one script call each, all in one pipeline): what each changed."""
        calls = [self._args(event) for _, event in items]

        async def build(pipe: Any) -> None:
            for (key, _), args in zip(items, calls, strict=True):
                await self._update(keys=[key], args=args, client=pipe)

        replies = await self._auto.call_many(build)
        return [
            Folded(
                applied=bool(applied),
                status=event.status,
                previous=_text(previous) or None,
                origin=_origin(stored),
            )
            for (_, event), (applied, previous, stored) in zip(items, replies, strict=True)
        ]

    def _args(self, event: StatusEvent) -> list[Any]:
        field = f"c:{event.channel}" if event.channel else "n"
        record = {
            "status": event.status,
            "updated_at": event.at,
            "provider": event.provider,
            "provider_message_id": event.provider_message_id,
            "attempts": event.attempts,
            "reason": event.reason,
            "reason_code": event.reason_code,
            "next_attempt_at": event.next_attempt_at,
        }
        record = {k: v for k, v in record.items() if v is not None}
        origin = event.origin.model_dump_json(exclude_none=True) if event.origin is not None else ""
        return [field, orjson.dumps(record), RANK[event.status], self.ttl_s, origin]

    async def read(self, key: str, notification_id: str, accepted_at: float) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(key)
        if not raw and time.time() - accepted_at > self.ttl_s:
            return None  # long gone
        return view(notification_id, accepted_at, {k.decode(): v for k, v in raw.items()})


def _origin(stored: bytes | None) -> Origin | None:
    return Origin.model_validate_json(stored) if stored else None


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def overall(n: dict[str, Any], channels: dict[str, dict[str, Any]]) -> str:
    if n.get("status") in TERMINAL and not channels:
        return str(n["status"])
    states = [c["status"] for c in channels.values()]
    if not states:
        return str(n.get("status", "accepted"))
    failed = [c["status"] for c in channels.values() if c.get("reason_code") != FELL_BACK]
    if REACHED.intersection(states) and FAILED.intersection(failed):
        return "partially_failed"
    for best in ("delivered", "sent", "sending"):
        if best in states:
            return best
    if "retrying" in states:
        return "sending"
    if any(s in ("queued", "scheduled", "accepted") for s in states):
        return "scheduled" if "scheduled" in states else "accepted"
    for s in ("bounced", "failed", "expired", "cancelled", "capped"):
        if s in states:
            return s
    return "suppressed"


def view(notification_id: str, accepted_at: float, fields: dict[str, bytes]) -> dict[str, Any]:
    """The tenant's view; with no fields yet (nothing routed so far) the notification is "accepted"."""
    n = orjson.loads(fields["n"]) if "n" in fields else {"status": "accepted"}
    channels = {
        name[2:]: orjson.loads(value) for name, value in sorted(fields.items()) if name.startswith("c:")
    }
    for name, value in fields.items():
        if name.startswith("e:"):  # engagement (herald_common.engagement): e:<channel>:<kind>
            _, channel, kind = name.split(":", 2)
            if channel in channels:
                channels[channel][f"{kind}_at"] = float(value)
    out: dict[str, Any] = {
        "id": notification_id,
        "status": overall(n, channels),
        "accepted_at": accepted_at,
        "channels": channels,
    }
    for name in ("reason", "reason_code", "next_attempt_at"):
        if n.get(name):
            out[name] = n[name]
    if "o" in fields:
        out["origin"] = orjson.loads(fields["o"])
    return out
