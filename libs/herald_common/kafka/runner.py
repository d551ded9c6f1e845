"""The consumer runner: at-least-once consumption with per-key order.

Records with the same key are handled one after another in offset order, other keys concurrently up
to a bound; it keeps fetching while older records are in flight (bounded), and periodically commits,
per partition, only the offsets before the first unfinished record, after flushing the producer. A
crash at any instant leaves unfinished records uncommitted, so they are redelivered; handlers make
redelivery harmless (the sender's ledger). When to commit, how much to fetch and what a handler's
error leads to are decided by the policies (herald_common.kafka.policies); this module only acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge

from herald_common import metrics
from herald_common.kafka.deadletter import DeadLetters
from herald_common.kafka.offsets import Offsets
from herald_common.kafka.policies import Backpressure, CommitPolicy, Decision, ErrorPolicy
from herald_common.kafka.security import client_options
from herald_common.lifecycle import Lifecycle
from herald_common.settings import ConsumerSettings

log = structlog.get_logger()

Record = ConsumerRecord
Handler = Callable[[ConsumerRecord], Awaitable[None]]
# A handler with a ``many`` method takes each fetched batch at once (see ConsumerRunner): it returns the
# records it could not read, which the runner hands to the handler itself (which refuses them with
# PoisonRecord) so that the error policy deals with them as with any record.
BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[list[ConsumerRecord]]]

_RETRY_LOG = {
    "retry": "handler failed; retrying",
    "wait_out": "handler failed on an outage; waiting it out",
}


_Done = asyncio.Future[None]  # set when a batch is finished


def _key(rec: ConsumerRecord) -> tuple[str, bytes]:
    """What per-key order is kept by: the record's key, or its partition when it has none."""
    return (rec.topic, rec.key if rec.key is not None else f"p{rec.partition}".encode())


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Finish and commit what is in flight before the partitions move to another member.
        self.runner._paused = True
        if not await self.runner._settle(self.runner.drain_timeout_s):
            log.warning("rebalance while records are still in flight; they will be redelivered")
        await self.runner._commit()
        self.runner._offsets.forget(revoked)
        if revoked:
            log.info("partitions revoked", count=len(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runner._paused = False
        log.info("partitions assigned", count=len(assigned))


class ConsumerRunner:
    def __init__(
        self,
        *,
        service: str,
        topics: Sequence[str],
        group_id: str,
        settings: ConsumerSettings,
        handler: Handler,
        producer: AIOKafkaProducer,
        lifecycle: Lifecycle,
        error_policy: ErrorPolicy | None = None,
        dead_letters: DeadLetters | None = None,
        pattern: str | None = None,
        metadata_refresh_s: float | None = None,
        latency_sensitive: bool = False,
    ) -> None:
        """``pattern`` (a regular expression over topic names) subscribes instead of ``topics``: topics
        created later that match it are picked up within ``metadata_refresh_s``. A ``latency_sensitive``
        consumer (the transactional lane's) waits less on a fetch that finds nothing (see
        ``HERALD_CONSUMER_FETCH_MAX_WAIT_MS``): more idle fetches, less latency per hop.

        A ``handler`` with a ``many`` method (:data:`BatchHandler`) is given each fetched batch whole, as
        one task: a batch's Redis work is then one or two round trips and no task per record. Per-key
        order holds between batches: a batch starts only when every earlier batch holding one of its
        keys has finished (batches of distinct keys, a campaign's, run concurrently); within a batch
        the records come in offset order per partition, and the handler keeps that. A batch that fails
        is retried whole as the error policy says; when the policy would dead-letter it, its records go
        one by one through ``handler`` instead, so only the bad one is."""
        self.service = service
        self.topics = list(topics)
        self.pattern = pattern
        self.group_id = group_id
        self.handler = handler
        self.batch_handler: BatchHandler | None = getattr(handler, "many", None)
        self.producer = producer
        self.lifecycle = lifecycle
        self.commit_policy = CommitPolicy(
            max_batch=settings.consumer_max_batch, interval_s=settings.consumer_commit_interval_s
        )
        self.backpressure = Backpressure(
            concurrency=settings.consumer_concurrency,
            max_in_flight=max(settings.consumer_max_batch, settings.consumer_concurrency),
        )
        self.error_policy = error_policy or ErrorPolicy()
        topic = self.error_policy.dead_letter_topic
        if dead_letters is None and topic is not None:
            dead_letters = DeadLetters(producer, topic, service)
        self.dead_letters = dead_letters
        self.drain_timeout_s = settings.drain_timeout_s
        self.consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            max_poll_records=self.commit_policy.max_batch,
            # aiokafka's default fetch is 50 MB; with a deep backlog every fetch is full and the records
            # not yet handed out wait in memory (Tansu applies the limit per partition).
            fetch_max_bytes=settings.consumer_fetch_max_bytes,
            # A waiting fetch may not be answered when records arrive (Tansu answers at the end of the
            # wait): aiokafka's 500 ms default then adds up to that to every hop of every message.
            fetch_max_wait_ms=settings.fetch_max_wait_ms(latency_sensitive),
            max_partition_fetch_bytes=min(settings.consumer_fetch_max_bytes, 2**20),
            client_id=f"herald-{service}",
            **({"metadata_max_age_ms": int(metadata_refresh_s * 1000)} if metadata_refresh_s else {}),
        )
        self._sem = asyncio.Semaphore(self.backpressure.concurrency)
        self._offsets = Offsets()
        self._queues: dict[tuple[str, bytes], deque[ConsumerRecord]] = {}
        self._batch_keys: dict[tuple[str, bytes], asyncio.Future[None]] = {}  # key → its last batch
        self._workers: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()  # set whenever a record finishes
        self._paused = False  # while partitions are being revoked
        self._inflight = metrics.INFLIGHT.labels(service)
        self._latency = metrics.MESSAGE_SECONDS.labels(service)
        self._errors = metrics.MESSAGE_ERRORS.labels(service)
        # Metric children per topic / partition, resolved once: labels() per fetched batch adds up.
        self._consumed: dict[str, Counter] = {}
        self._lag: dict[TopicPartition, Gauge] = {}
        self._polled_ok = False

    async def ready(self) -> bool:
        return self._polled_ok

    async def start(self) -> None:
        await self.consumer.start()
        if self.pattern is not None:
            self.consumer.subscribe(pattern=self.pattern, listener=_Rebalance(self))
        else:
            self.consumer.subscribe(self.topics, listener=_Rebalance(self))

    async def run(self) -> None:
        """Consume until the lifecycle asks to stop; then finish what is in flight, commit and leave."""
        last_commit = time.monotonic()
        try:
            while not self.lifecycle.stopping.is_set():
                self.lifecycle.beat()
                room = 0 if self._paused else self.backpressure.may_fetch(self._offsets.in_flight)
                if room:
                    await self._fetch(min(room, self.commit_policy.max_batch))
                else:
                    await self._wait_progress(self.commit_policy.poll_timeout_ms / 1000)
                if self.commit_policy.should_commit(time.monotonic(), last_commit):
                    await self._commit()
                    last_commit = time.monotonic()
            await self._settle(None)  # the drain: wait_drained cancels this past the drain timeout
            await self._commit()
        finally:
            for task in self._workers:
                task.cancel()
            await self.consumer.stop()

    async def _fetch(self, max_records: int) -> None:
        try:
            batch = await self.consumer.getmany(
                timeout_ms=self.commit_policy.poll_timeout_ms, max_records=max_records
            )
            self._polled_ok = True
        except KafkaError as exc:
            self._polled_ok = False
            log.warning("fetch failed", error=str(exc))
            await asyncio.sleep(1.0)
            return
        for tp, records in batch.items():
            consumed = self._consumed.get(tp.topic)
            if consumed is None:
                consumed = self._consumed[tp.topic] = metrics.MESSAGES_CONSUMED.labels(self.service, tp.topic)
            consumed.inc(len(records))
            for rec in records:
                self._offsets.fetched(tp, rec.offset)
                if self.batch_handler is None:
                    self._enqueue(rec)
        if self.batch_handler is not None and batch:
            self._spawn(self._run_batch([rec for records in batch.values() for rec in records]))
        self._record_lag(batch)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    def _batch_turn(self, recs: list[ConsumerRecord]) -> tuple[_Done, set[_Done]]:
        """This batch's done-future, now the last of its keys, and the earlier batches it waits for."""
        done: _Done = asyncio.get_running_loop().create_future()
        earlier: set[_Done] = set()
        last = self._batch_keys
        for rec in recs:
            key = _key(rec)
            before = last.get(key)
            if before is not done:
                if before is not None:
                    earlier.add(before)
                last[key] = done
        return done, earlier

    def _batch_done(self, recs: list[ConsumerRecord], done: asyncio.Future[None]) -> None:
        done.set_result(None)
        last = self._batch_keys
        for rec in recs:
            key = _key(rec)
            if last.get(key) is done:
                del last[key]

    async def _run_batch(self, recs: list[ConsumerRecord]) -> None:
        done, earlier = self._batch_turn(recs)
        try:
            if earlier:
                await asyncio.wait(earlier)
            await self._run_batch_now(recs)
        finally:
            self._batch_done(recs, done)

    async def _run_batch_now(self, recs: list[ConsumerRecord]) -> None:
        try:
            async with self._sem:
                self._inflight.inc(len(recs))
                started = time.perf_counter()
                try:
                    await self._batch_with_policy(recs)
                finally:
                    self._inflight.dec(len(recs))
                    self._latency.observe(time.perf_counter() - started)
        except Exception as exc:  # only while draining: leave the batch uncommitted for the next owner
            log.info("batch abandoned while draining; it will be redelivered", error=repr(exc))
            self._offsets.abandoned(len(recs))
            self._progress.set()
            return
        for rec in recs:
            self._offsets.handled(TopicPartition(rec.topic, rec.partition), rec.offset)
        self._progress.set()

    async def _batch_with_policy(self, recs: list[ConsumerRecord]) -> None:
        assert self.batch_handler is not None
        handle_many = self.batch_handler
        unreadable: list[ConsumerRecord] = []

        async def call() -> None:
            unreadable[:] = await handle_many(recs)

        async def one_by_one(exc: Exception, _: Decision) -> None:  # find the record that fails
            log.warning("batch failed; handling its records one by one", error=repr(exc))
            for rec in recs:
                await self._handle_with_policy(rec)

        await self._with_policy(call, {"records": len(recs)}, one_by_one)
        for rec in unreadable:  # the single handler refuses it again, and the policy dead-letters it
            await self._handle_with_policy(rec)

    def _enqueue(self, rec: ConsumerRecord) -> None:
        """Records with the same key run one after another, in offset order; other keys concurrently."""
        key = _key(rec)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            task = asyncio.create_task(self._drain_key(key, queue))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        queue.append(rec)

    async def _drain_key(self, key: tuple[str, bytes], queue: deque[ConsumerRecord]) -> None:
        try:
            while queue:
                rec = queue[0]
                async with self._sem:
                    self._inflight.inc()
                    started = time.perf_counter()
                    try:
                        await self._handle_with_policy(rec)
                    finally:
                        self._inflight.dec()
                        self._latency.observe(time.perf_counter() - started)
                queue.popleft()
                self._offsets.handled(TopicPartition(rec.topic, rec.partition), rec.offset)
                self._progress.set()
        except Exception as exc:  # only while draining: leave the rest uncommitted for the next owner
            log.info("record abandoned while draining; it will be redelivered", error=repr(exc))
            self._offsets.abandoned(len(queue))
            self._progress.set()
        finally:
            del self._queues[key]

    async def _wait_progress(self, timeout_s: float) -> None:
        self._progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout=timeout_s)

    async def _settle(self, timeout_s: float | None) -> bool:
        """Wait until no record is in flight; False if ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._workers:
            self.lifecycle.beat()
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.wait(set(self._workers), timeout=0.5)
        return True

    async def _commit(self) -> None:
        offsets = self._offsets.to_commit()
        assigned = self.consumer.assignment()
        stale = [tp for tp in offsets if tp not in assigned]
        if stale:  # records of partitions that moved away while they were handled: not ours to commit
            self._offsets.forget(stale)
            offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.producer.flush()  # what the handled records produced is acknowledged first
            await self.consumer.commit(offsets)
            self._offsets.committed(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved on; the next owner gets those records again and the ledger dedupes.
            log.warning("commit failed; records will be redelivered", error=str(exc))

    async def _handle_with_policy(self, rec: ConsumerRecord) -> None:
        where = {"topic": rec.topic, "offset": rec.offset}

        async def dead_letter(exc: Exception, decision: Decision) -> None:
            # the policy dead-letters only with a topic, and then the writer exists
            assert self.dead_letters is not None and decision.cause is not None
            log.error("handler failed; dead-lettering record", cause=decision.cause, error=repr(exc), **where)
            await self.dead_letters.write_record(rec, reason=repr(exc), cause=decision.cause)

        await self._with_policy(partial(self.handler, rec), where, dead_letter)

    async def _with_policy(
        self,
        call: Callable[[], Awaitable[None]],
        where: dict[str, object],
        dead_letter: Callable[[Exception, Decision], Awaitable[None]],
    ) -> None:
        """Run ``call`` until it succeeds, as the error policy says: retried or waited out with backoff,
        ``dead_letter`` when the policy gives the work up, raised while draining (left uncommitted)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await call()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._errors.inc()
                decision = self.error_policy.decide(exc, attempt, draining=self.lifecycle.stopping.is_set())
                if decision.action == "give_up":
                    raise  # draining: leave the batch uncommitted rather than wait out a retry
                if decision.action == "dead_letter":
                    await dead_letter(exc, decision)
                    return
                log.warning(_RETRY_LOG[decision.action], attempt=attempt, error=repr(exc), **where)
                self.lifecycle.beat()  # waiting out an outage is not a hung process: stay live
                await asyncio.sleep(decision.delay_s)

    def _record_lag(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                lag = self._lag.get(tp)
                if lag is None:
                    labels = (tp.topic, str(tp.partition), self.group_id)
                    lag = self._lag[tp] = metrics.CONSUMER_LAG.labels(*labels)
                lag.set(max(0, high - records[-1].offset - 1))
