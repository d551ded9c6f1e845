"""One campaign's fan-out, run by the replica that holds its lease.

Each round reads the campaign (so a pause, a cancel or a new rate is seen within one round, at most
half a second plus one batch) and does one step of its phase:

- ``snapshot`` (only with a segment): the next page of the uploaded audience, else of the tenant's
  contact index, is read with its contacts, the segment evaluated, the matches added to the campaign's
  ``recipients`` set and the last id evaluated checkpointed (one transaction). The segment is budgeted
  (:mod:`herald_common.conditions`): a contact for whom it would cost more than its budget is recorded
  ``skipped`` (reason ``segment_over_budget``), and a round evaluates at most
  :data:`SNAPSHOT_ROUND_BUDGET` steps before the next round goes on from its checkpoint, so a costly
  segment over many contacts never holds the service's loop for long. A stored segment that today's
  bounds refuse matches nobody (and ``:start`` refuses it). Without a segment the
  uploaded audience is the recipient list as it stood at start (uploads are refused once started).
- ``fanout``: the next batch of recipients after the checkpoint is published through
  :class:`~herald_common.intake.Intake` (acks=all) under their deterministic ids, then the batch is
  marked ``queued`` and the checkpoint moved in one script that first checks the lease is still ours.
  A crash between the two replays the batch under the same ids: the senders' ledger sends each once.
  Batches are sized to half a second at the campaign's rate and paced to it.
- ``cancelling``: every recipient after the checkpoint is recorded ``cancelled``; then ``done``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import structlog
from aiokafka.errors import KafkaError

from herald_campaigns.schedule import local_send_at
from herald_common import metrics
from herald_common.backoff import backoff
from herald_common.campaigns.model import recipient_notification_id
from herald_common.campaigns.records import Records
from herald_common.campaigns.store import CampaignStore, Snapshot
from herald_common.campaigns.view import describe
from herald_common.conditions import (
    EXPRESSION_BUDGET,
    Budget,
    BudgetExceeded,
    BudgetSpent,
    Expression,
    ExpressionError,
    compile_expression,
    contact_variables,
)
from herald_common.ids import NotificationIds
from herald_common.intake import Intake, QueueUnavailable, Submission
from herald_common.notices import Notice, NoticeType, publish_notices
from herald_common.redisio import queue_all
from herald_common.schemas import NotificationIn, Recipient
from herald_common.store import Store
from herald_common.wire import Origin

log = structlog.get_logger()

SNAPSHOT_PAGE = 1000
SNAPSHOT_ROUND_BUDGET = 4 * EXPRESSION_BUDGET  # segment steps per snapshot round, then the loop turns
OVER_BUDGET = "segment_over_budget"
ROUND_S = 0.5  # a batch lasts this long at the campaign's rate: rate changes and pauses apply within it


class LeaseLost(Exception):
    """Another replica holds the campaign now (ours expired): stop without writing anything."""


class CampaignRun:
    def __init__(
        self,
        *,
        store: CampaignStore,
        records: Records,
        contacts: Store,
        intake: Intake,
        ids: NotificationIds,
        token: str,
        batch_max: int,
        stop: asyncio.Event,
        progress_s: float = 5.0,
    ) -> None:
        self.store, self.records, self.contacts, self.intake, self.ids = store, records, contacts, intake, ids
        self.token, self.batch_max, self.stop = token, batch_max, stop
        self.stopping = stop.is_set
        self.progress_s = progress_s
        self._progress_at: dict[str, float] = {}  # campaign id → when its last progress notice went out
        self._segments: dict[str, tuple[str, Expression | None]] = {}  # campaign id → (source, compiled)

    async def run(self, tenant_id: str, campaign_id: str) -> None:
        """Rounds until the campaign is done, paused, cancelled and recorded, or the process drains."""
        bound = log.bind(tenant=tenant_id, campaign=campaign_id)
        while not self.stopping():
            snap = await self.store.get(tenant_id, campaign_id)
            if snap is None:
                return
            if snap.state == "scheduled":
                if (snap.campaign.send_at or 0) > time.time():
                    return
                await self.store.transition(tenant_id, campaign_id, ("scheduled",), "running")
                continue
            phase = snap.fields.get("phase") or ("snapshot" if snap.campaign.segment else "fanout")
            if snap.state == "cancelled":
                if phase in ("snapshot", "done"):
                    await self._finish(snap, "cancelled")
                    return
                phase = "cancelling"
            elif snap.state != "running":
                return  # paused (resume puts it back in the active set) or no longer ours to run
            if phase == "done":
                await self._finish(snap, "completed")
                bound.info("campaign fanned out", recipients=int(snap.number("fanned")))
                return
            started = time.monotonic()
            if phase == "snapshot":
                await self._snapshot_page(snap)
                continue
            handled = await (self._cancel_batch(snap) if phase == "cancelling" else self._fanout_batch(snap))
            if phase == "fanout" and handled:
                await self._progress(snap)
                await self._pace(started, handled / snap.rate)

    async def _pace(self, started: float, period: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, started + period - time.monotonic()))

    async def _finish(self, snap: Snapshot, final: str) -> None:
        c = snap.campaign
        if final == "completed":
            await self.store.transition(
                c.tenant_id,
                c.id,
                ("running",),
                "completed",
                active=None,
                ended_at=repr(time.time()),
                phase="done",
            )
        else:
            await self.store.transition(
                c.tenant_id, c.id, ("cancelled",), "cancelled", active=None, phase="done"
            )
        self._progress_at.pop(c.id, None)
        self._segments.pop(c.id, None)
        await self._notice(c.tenant_id, c.id, "campaign.finished", final)

    async def _progress(self, snap: Snapshot) -> None:
        """A ``campaign.progress`` notice at most every ``progress_s`` while the campaign fans out."""
        c, now = snap.campaign, time.monotonic()
        if now - self._progress_at.get(c.id, 0.0) >= self.progress_s:
            self._progress_at[c.id] = now
            await self._notice(c.tenant_id, c.id, "campaign.progress", None)

    async def _notice(self, tenant_id: str, campaign_id: str, kind: NoticeType, seq: str | None) -> None:
        snap = await self.store.get(tenant_id, campaign_id)
        if snap is None:
            return
        data = await describe(self.records, snap)
        notice = Notice(
            tenant_id=tenant_id,
            type=kind,
            subject_id=campaign_id,
            seq=seq if seq is not None else str(data["fanned_out"]),
            data=data,
        )
        try:
            await publish_notices(self.intake.producer, self.intake.topics, [notice])
        except KafkaError as exc:  # a progress webhook is not worth stalling the fan-out for
            log.warning("could not publish a campaign notice", kind=kind, error=repr(exc))

    def _recipients_key(self, snap: Snapshot) -> str:
        c = snap.campaign
        return self.store.keys.campaign(c.tenant_id, c.id, "recipients" if c.segment else "audience")

    async def _snapshot_page(self, snap: Snapshot) -> None:
        c = snap.campaign
        keys = self.store.keys
        uploaded = snap.number("audience") > 0
        source = keys.campaign(c.tenant_id, c.id, "audience") if uploaded else keys.contact_index(c.tenant_id)
        after = snap.fields.get("snap_cursor", "")
        page = await self.store.members(source, after, SNAPSHOT_PAGE)
        target = self._recipients_key(snap)
        if not page:
            # the recipients: those the segment selected and those it was over budget for (skipped)
            total = await self.store.redis.zcard(target) + int(snap.number("snap_skipped"))
            await self.store.set_fields(c.tenant_id, c.id, phase="fanout", recipients=total)
            return
        segment = self._segment(snap)
        budget = Budget(SNAPSHOT_ROUND_BUDGET, "one round of the segment")
        matched: list[str] = []
        over: list[str] = []
        last = page[-1]
        for cid, contact in zip(page, await self.contacts.get_contacts(c.tenant_id, page), strict=True):
            if contact is not None and segment is not None:
                try:
                    if segment.test({"contact": contact_variables(contact)}, budget):
                        matched.append(contact.id)
                except BudgetSpent:  # this round's share is used: the next round starts here
                    break
                except BudgetExceeded:
                    over.append(contact.id)
                except ExpressionError:
                    pass  # a field it needs is missing, say: not in the segment
            last = cid
        async with self.store.redis.pipeline(transaction=True) as pipe:
            if matched:
                pipe.zadd(target, dict.fromkeys(matched, 0))
            skips = [self.records.move_build(c.tenant_id, c.id, cid, "skipped", OVER_BUDGET) for cid in over]
            await queue_all(skips, pipe)
            if over:
                pipe.hincrby(keys.campaign(c.tenant_id, c.id), "snap_skipped", len(over))
            pipe.hset(keys.campaign(c.tenant_id, c.id), "snap_cursor", last)
            await pipe.execute()
        metrics.CAMPAIGN_RECIPIENTS.labels("snapshotted").inc(len(matched))
        if over:
            metrics.CAMPAIGN_RECIPIENTS.labels("skipped").inc(len(over))

    def _segment(self, snap: Snapshot) -> Expression | None:
        """The campaign's segment, compiled once per run under today's bounds; None (nobody matches)
        when they refuse a stored one."""
        c = snap.campaign
        assert c.segment is not None
        cached = self._segments.get(c.id)
        if cached is not None and cached[0] == c.segment:
            return cached[1]
        try:
            compiled: Expression | None = compile_expression(c.segment)
        except ExpressionError as exc:
            log.warning("campaign segment refused; it matches nobody", campaign=c.id, error=str(exc))
            compiled = None
        self._segments[c.id] = (c.segment, compiled)
        return compiled

    async def _fanout_batch(self, snap: Snapshot) -> int:
        c = snap.campaign
        if not snap.fields.get("phase"):
            total = await self.store.redis.zcard(self._recipients_key(snap))
            await self.store.set_fields(c.tenant_id, c.id, phase="fanout", recipients=total)
        size = max(1, min(self.batch_max, int(snap.rate * ROUND_S)))
        batch = await self.store.members(self._recipients_key(snap), snap.fields.get("cursor", ""), size)
        if not batch:
            await self.store.set_fields(c.tenant_id, c.id, phase="done")
            return 0
        send_at: list[float | None] = [None] * len(batch)
        if c.local_time is not None:
            started = float(snap.fields.get("started_at") or c.created_at)
            found = await self.contacts.get_contacts(c.tenant_id, batch)
            send_at = [local_send_at(c.local_time, x.timezone if x else None, started) for x in found]
        origin = Origin(campaign_id=c.id)
        submissions = [
            Submission(
                NotificationIn.model_construct(
                    to=Recipient.model_construct(contact_id=cid, email=None, phone=None, push_token=None),
                    template_id=c.template_id,
                    content=None,
                    channels=c.channels,
                    data=c.data,
                    category=c.category,
                    lane=None,
                    locale=None,
                    expires_at=None,
                    send_at=datetime.fromtimestamp(at, UTC) if at is not None else None,
                    cancellation_key=c.cancellation_key(),
                    idempotency_key=None,
                ),
                notification_id=recipient_notification_id(self.ids, c.tenant_id, c, cid),
                origin=origin,
            )
            for cid, at in zip(batch, send_at, strict=True)
        ]
        await self._publish(c.tenant_id, submissions)
        if not await self.records.checkpoint(
            c.tenant_id, c.id, self.token, batch, cursor_field="cursor", count_field="fanned"
        ):
            raise LeaseLost(c.id)
        metrics.CAMPAIGN_RECIPIENTS.labels("fanned_out").inc(len(batch))
        return len(batch)

    async def _publish(self, tenant_id: str, submissions: list[Submission]) -> None:
        attempt = 0
        while True:
            try:
                await self.intake.publish_many(tenant_id, submissions)
                return
            except (QueueUnavailable, KafkaError) as exc:
                attempt += 1
                if self.stopping():
                    raise
                delay = backoff(attempt, base_s=0.2, max_s=5.0)
                log.warning("could not publish a campaign batch; retrying", error=repr(exc), delay_s=delay)
                await asyncio.sleep(delay)

    async def _cancel_batch(self, snap: Snapshot) -> int:
        c = snap.campaign
        batch = await self.store.members(
            self._recipients_key(snap), snap.fields.get("cursor", ""), SNAPSHOT_PAGE
        )
        if not batch:
            await self._finish(snap, "cancelled")
            return 0
        if not await self.records.checkpoint(
            c.tenant_id,
            c.id,
            self.token,
            batch,
            cursor_field="cursor",
            count_field="cancelled_unsent",
            outcome="cancelled",
            reason="campaign_cancelled",
        ):
            raise LeaseLost(c.id)
        metrics.CAMPAIGN_RECIPIENTS.labels("cancelled").inc(len(batch))
        return len(batch)
