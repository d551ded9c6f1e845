"""The batching sender: each fetched batch of deliveries at once, for a provider that takes many messages
per request (SendGrid), on either lane without a fair share (that one admits deliveries one by one).

The consumer runner hands it each fetched batch whole (its batch mode). The deliveries are begun in one
pipeline of ledger scripts and sent in chunks: a provider that takes many messages per request
(SendGrid) gets requests of up to ``HERALD_SENDGRID_BATCH_MAX``, whose sent messages are recorded in
one pipeline and reported in one produce. Whatever is out of the ordinary
goes through :meth:`Sender.handle`, one at a time, exactly as without the batch mode: a delivery that
expired, whose campaign is paused, that can fall back to another channel, that the ledger already
knows (a replay, a cancellation, a stale copy); and a refused send goes through the sender's own
failure handling (retry, dead letter, suppression).

Per-key (per-recipient) order: a chunk holds at most one delivery per key; a key's later deliveries in
the batch, and every delivery of a key after one that goes through ``handle``, go through ``handle``
after the chunks, in offset order.
"""

from __future__ import annotations

import time
from typing import Any

import pydantic
from aiokafka.structs import ConsumerRecord

from herald_common.wire import Delivery, Status
from herald_providers.base import SendResult
from herald_sender.handler import Sender
from herald_sender.ledger import Cancellable


def _sent_fields(attempts: int, result: SendResult) -> dict[str, Any]:
    return {
        "attempts": attempts,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id,
    }


class BatchSender:
    def __init__(self, sender: Sender, max_size: int) -> None:
        self.sender = sender
        self.max_size = max_size

    async def __call__(self, rec: ConsumerRecord) -> None:
        await self.sender.handle(rec)

    async def many(self, recs: list[ConsumerRecord]) -> list[ConsumerRecord]:
        unreadable: list[ConsumerRecord] = []
        singly: list[ConsumerRecord] = []
        batch: list[tuple[ConsumerRecord, Delivery]] = []
        seen: set[tuple[int, bytes | None]] = set()  # keys with a delivery in the chunks
        held: set[tuple[int, bytes | None]] = set()  # keys whose deliveries go through handle
        paused: dict[tuple[str, str], bool] = {}  # asked once per campaign and batch, not per delivery
        now = time.time()
        for rec in recs:
            try:
                d = Delivery.model_validate_json(rec.value)
            except (pydantic.ValidationError, ValueError):
                unreadable.append(rec)
                continue
            key = (rec.partition, rec.key)
            if (
                key in held
                or key in seen
                or d.fallback is not None
                or (d.expires_at is not None and d.expires_at < now)
                or await self._paused(d, paused)
            ):
                held.add(key)
                singly.append(rec)
            else:
                seen.add(key)
                batch.append((rec, d))
        for start in range(0, len(batch), self.max_size):
            singly += await self._send(batch[start : start + self.max_size])
        for rec in sorted(singly, key=lambda r: (r.partition, r.offset)):
            await self.sender.handle(rec)
        return unreadable

    async def _paused(self, d: Delivery, known: dict[tuple[str, str], bool]) -> bool:
        campaign = d.origin.campaign_id if d.origin is not None else None
        if campaign is None:
            return False
        key = (d.tenant_id, campaign)
        if key not in known:
            known[key] = await self.sender.campaigns.paused(d.tenant_id, campaign)
        return known[key]

    async def _send(self, batch: list[tuple[ConsumerRecord, Delivery]]) -> list[ConsumerRecord]:
        """Begin, send and record one provider request's worth; returns the records left to handle singly."""
        s = self.sender
        begins = await s.ledger.begin_many(
            [
                (
                    d.tenant_id,
                    d.delivery_id,
                    d.attempt,
                    Cancellable(d.tenant_id, d.notification_id, d.cancellation_key, d.accepted_at),
                )
                for _, d in batch
            ]
        )
        go = [(rec, d, b.attempts) for (rec, d), b in zip(batch, begins, strict=True) if b.outcome == "go"]
        # done, cancelled or stale: begun again alone, the ledger answers the same and handle acts on it
        singly = [rec for (rec, _), b in zip(batch, begins, strict=True) if b.outcome != "go"]
        if not go:
            return singly
        started = time.perf_counter()
        outcomes = await s.outbound.chain.send_batch([s.message(d) for _, d, _ in go])
        sent: list[tuple[Delivery, int, SendResult]] = []
        for (rec, d, attempts), outcome in zip(go, outcomes, strict=True):
            if isinstance(outcome, SendResult):
                sent.append((d, attempts, outcome))
            elif await s.after_error(rec, d, attempts, outcome, started):
                singly.append(rec)  # an in-place retry: attempted again on its own
        if sent:
            for _, _, result in sent:
                s.observe(started, result.provider, "sent")
            rows = [(d.tenant_id, d.delivery_id, r.provider, r.provider_message_id or "") for d, _, r in sent]
            await s.durably(lambda: s.ledger.sent_many(rows))
            statuses: list[tuple[Delivery, Status, dict[str, Any]]] = [
                (d, "sent", _sent_fields(attempts, r)) for d, attempts, r in sent
            ]
            await s.durably(lambda: s.report.statuses(statuses))
        return singly
