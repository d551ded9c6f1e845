"""Pre-aggregated figures per tenant and day (``GET /v1/stats``): never a scan of messages.

One Redis hash per tenant and UTC day holds every counter of that day, once in total (``*|<counter>``)
and once per dimension value (``template|<id>|<counter>``, ``campaign|…``, ``trigger|…``,
``channel|…``), incremented by one script call per status event (HINCRBYs, the ``accepted`` flag's
HSETNX, and an EXPIRE only when the hash has none yet), expiring ``HERALD_STATS_RETENTION_DAYS`` after
the day. Reading a range is one HGETALL per day.

What each counter counts (on the day of the event that moved it):

- ``accepted``: notifications, once each, when the tracker sees the first status event of one (so a
  notification counts when it is routed, or scheduled/held, not at the API); under ``channel`` it
  counts the notification's deliveries on that channel;
- ``sent``, ``delivered``, ``bounced``, ``failed``, ``suppressed``, ``capped``: channel outcomes, one per
  channel of a notification (an email + SMS notification sent counts one email sent and one SMS sent),
  the first time that channel reaches the status (:attr:`Folded.changed`; replays count nothing).
  ``sent`` is the provider taking it: also counted when ``delivered`` or ``bounced`` arrives for a
  channel never seen ``sent``. A notification-level failure (unknown contact, missing template)
  counts one ``failed`` without a channel;
- ``opened``, ``clicked``, ``unsubscribed``, ``complaints``: engagement (herald_common.engagement), once
  per message channel whatever the number of events; an SMS STOP counts ``unsubscribed`` on ``sms``
  without a template or campaign (the reply names no notification).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final

import redis.asyncio as aioredis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from herald_common.redisio import Build, Keys, auto_pipeline, register_script
from herald_common.status import RANK, Folded
from herald_common.wire import Origin, StatusEvent

COUNTERS: Final = (
    "accepted",
    "sent",
    "delivered",
    "bounced",
    "failed",
    "suppressed",
    "capped",
    "opened",
    "clicked",
    "unsubscribed",
    "complaints",
)
DIMENSIONS: Final = ("template", "campaign", "trigger", "channel")
BY: Final = ("day", *DIMENSIONS)
_OUTCOMES = frozenset({"sent", "delivered", "bounced", "failed", "suppressed", "capped"})
_PROVIDER_REACHED = frozenset({"delivered", "bounced"})
_COUNTED = "s"  # field of the notification's status hash: its "accepted" was counted
TOTAL: Final = "*"


class RecordSettings(BaseSettings):
    """How long the message log and the statistics are kept (tracker writes, gateway reads)."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore", frozen=True)

    stats_retention_days: int = Field(
        400,
        ge=1,
        le=3660,
        description="how many days GET /v1/stats can look back (daily counters expire then)",
    )
    message_log_retention_days: int = Field(
        30,
        ge=1,
        le=3660,
        description="how long a notification stays in its contact's message log (it also leaves when "
        "its status expires, HERALD_STATUS_TTL_S)",
    )
    message_log_max_entries: int = Field(
        500, ge=1, le=100_000, description="most notifications kept in one contact's message log"
    )


def day_of(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def fields(origin: Origin | None, channel: str | None, counter: str, total: bool = True) -> list[str]:
    """The hash fields one count of ``counter`` increments: the total, and each dimension value."""
    out = [f"{TOTAL}|{counter}"] if total else []
    if origin is not None:
        for dim, value in (
            ("template", origin.template_id),
            ("campaign", origin.campaign_id),
            ("trigger", origin.trigger),
        ):
            if value:
                out.append(f"{dim}|{value}|{counter}")
    if channel:
        out.append(f"channel|{channel}|{counter}")
    return out


def outcome_counters(event: StatusEvent, folded: Folded) -> list[str]:
    """The outcome counters a folded event moves (``accepted`` is decided apart)."""
    if not folded.changed or event.status not in _OUTCOMES:
        return []
    if event.channel is None:
        return ["failed"] if event.status == "failed" else []
    out: list[str] = [event.status]
    if event.status in _PROVIDER_REACHED and (
        folded.previous is None or RANK[folded.previous] < RANK["sent"]
    ):
        out.append("sent")  # the provider took it, though its "sent" was never seen
    return out


# KEYS[1] the day's hash, KEYS[2] (optional) the notification's status hash; ARGV[1] the hash's TTL,
# ARGV[2] how many of the fields that follow are always incremented, the rest only the first time.
_ADD = (
    """
local key, n = KEYS[1], tonumber(ARGV[2])
for i = 3, 2 + n do redis.call('HINCRBY', key, ARGV[i], 1) end
if #ARGV > 2 + n and KEYS[2] and redis.call('HSETNX', KEYS[2], '"""
    + _COUNTED
    + """', '1') == 1 then
  for i = 3 + n, #ARGV do redis.call('HINCRBY', key, ARGV[i], 1) end
end
if redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, ARGV[1]) end
"""
)


class Stats:
    def __init__(self, redis: aioredis.Redis, keys: Keys, retention_days: int) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_days = retention_days
        self._auto = auto_pipeline(redis)
        self._script = register_script(redis, _ADD)

    async def count(
        self,
        tenant_id: str,
        at: float,
        origin: Origin | None,
        channel: str | None,
        counters: Iterable[str],
        total: bool = True,
    ) -> None:
        """Add one to each of ``counters`` for the day of ``at``, in total and per dimension value."""
        todo = [f for c in counters for f in fields(origin, channel, c, total)]
        if todo:
            await self._add(tenant_id, at, todo)

    async def _add(
        self, tenant_id: str, at: float, always: list[str], first: Sequence[str] = (), nkey: str = ""
    ) -> None:
        await self._auto.call(self._build(tenant_id, at, always, first, nkey))

    def _build(
        self, tenant_id: str, at: float, always: list[str], first: Sequence[str] = (), nkey: str = ""
    ) -> Build:
        """One script call: increment ``always``, and ``first`` too when ``nkey``'s counted flag was
        not set yet (setting it); the day's hash gets its expiry when it has none."""
        keys = [self.keys.stats(tenant_id, day_of(at))] + ([nkey] if nkey else [])
        args = [(self.retention_days + 1) * 86400, len(always), *always, *first]
        return lambda pipe: self._script(keys=keys, args=args, client=pipe)

    def plan(self, event: StatusEvent, folded: Folded) -> Build | None:
        """The tracker's observer: count what the event changed (see the module's docstring), with one
        script call per event."""
        if not folded.changed:
            return None
        always = [f for c in outcome_counters(event, folded) for f in fields(folded.origin, event.channel, c)]
        first: list[str] = []
        nkey = ""
        if folded.previous is None:
            nkey = self.keys.notification(event.tenant_id, event.notification_id)
            first = fields(folded.origin, None, "accepted")
            if event.channel is not None:  # the channel's line counts its deliveries
                always += fields(None, event.channel, "accepted", total=False)
        if always or first:
            return self._build(event.tenant_id, event.at, always, first, nkey)
        return None

    async def read(self, tenant_id: str, start: date, end: date, by: str, today: date | None = None) -> dict:
        """Counters from ``start`` to ``end`` (inclusive, UTC days) grouped by ``by``; the range is
        clamped to the retention (older days have expired) and to today."""
        today = today or datetime.fromtimestamp(time.time(), UTC).date()
        first = max(start, today - timedelta(days=self.retention_days))
        last = min(end, today)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)] if first <= last else []
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in days:
                pipe.hgetall(self.keys.stats(tenant_id, d.isoformat()))
            hashes = await pipe.execute() if days else []
        rows: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
        totals = dict.fromkeys(COUNTERS, 0)
        for d, raw in zip(days, hashes, strict=True):
            if by == "day":
                rows[d.isoformat()]  # every day of the range has a row, zeros included
            for name, value in raw.items():
                parts = name.decode().split("|")
                counter, n = parts[-1], int(value)
                if counter not in totals:
                    continue
                if parts[0] == TOTAL:
                    totals[counter] += n
                    if by == "day":
                        rows[d.isoformat()][counter] += n
                elif parts[0] == by and len(parts) == 3:
                    rows[parts[1]][counter] += n
        return {
            "from": first.isoformat() if days else start.isoformat(),
            "to": last.isoformat() if days else end.isoformat(),
            "by": by,
            "rows": [{by: value, **counts} for value, counts in sorted(rows.items())],
            "totals": totals,
        }
