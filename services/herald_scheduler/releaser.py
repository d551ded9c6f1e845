"""The release loop: claim due items, produce them back onto their topics, then ack them.

A produce that fails leaves its items (those of its topic) unacked; they are released again once their
lease runs out. Acking only after Kafka acknowledged the write keeps every release at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict

import structlog
from aiokafka import AIOKafkaProducer
from redis.exceptions import RedisError

from herald_common import metrics
from herald_common.delayed import DelayedRecord, DelayQueue
from herald_common.kafka import produce_many
from herald_common.lifecycle import Lifecycle

log = structlog.get_logger()


class Releaser:
    def __init__(
        self,
        queue: DelayQueue,
        producer: AIOKafkaProducer,
        lifecycle: Lifecycle,
        *,
        batch: int,
        lease_s: float,
        poll_interval_s: float,
    ) -> None:
        self.queue = queue
        self.producer = producer
        self.lifecycle = lifecycle
        self.batch = batch
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.released = 0

    async def run(self) -> None:
        """Release until the lifecycle asks to stop; the round in hand is finished first."""
        while not self.lifecycle.stopping.is_set():
            self.lifecycle.beat()
            try:
                count = await self.release_once()
            except RedisError as exc:
                log.warning("redis unavailable; retrying", error=str(exc))
                await self._pause(1.0)
                continue
            if count < self.batch:
                await self._pause(await self._idle_for())

    async def release_once(self) -> int:
        """One round: claim a batch, produce it per topic as a few record batches (one future per
        partition, not per item), ack what Kafka acknowledged."""
        claim = await self.queue.claim(self.batch, self.lease_s)
        if not claim.items:
            return 0
        done: list[str] = []  # produced and acknowledged (or unreadable: dropped for good)
        by_topic: dict[str, list[tuple[str, DelayedRecord]]] = defaultdict(list)
        for item_id, raw in claim.items:
            try:
                record = DelayedRecord.decode(raw)
            except (ValueError, KeyError, TypeError):
                log.error("unreadable delayed item dropped", item=item_id)
                done.append(item_id)
                continue
            by_topic[record.topic].append((item_id, record))
        topics = list(by_topic.items())
        results = await asyncio.gather(
            *(
                produce_many(
                    self.producer,
                    topic,
                    [(r.key, r.value) for _, r in items],
                    headers=[r.headers for _, r in items],
                )
                for topic, items in topics
            ),
            return_exceptions=True,
        )
        for (_, items), result in zip(topics, results, strict=True):
            if not isinstance(result, BaseException):
                done += [item_id for item_id, _ in items]
        if len(done) < len(claim.items):
            log.warning(
                "some releases were not acknowledged; they go again after the lease",
                failed=len(claim.items) - len(done),
            )
        await self.queue.ack(claim.token, done)
        self.released += len(done)
        metrics.SCHEDULER_RELEASED.inc(len(done))
        log.debug("released", count=len(done))
        return len(claim.items)

    async def _idle_for(self) -> float:
        due, leased = await self.queue.pending()
        metrics.SCHEDULER_PENDING.set(due + leased)
        next_due = await self.queue.next_due()
        if next_due is None:
            return self.poll_interval_s
        return max(0.0, min(self.poll_interval_s, next_due - time.time()))

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.lifecycle.stopping.wait(), timeout=seconds)
