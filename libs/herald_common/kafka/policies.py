"""The consumer runner's semantics as named, pure objects: each one decides, the runner only acts.

- :class:`CommitPolicy` — when to commit (``should_commit``); what is committed is decided by
  :class:`~herald_common.kafka.offsets.Offsets` and always follows a producer flush.
- :class:`Backpressure` — how many records the next fetch may take (``may_fetch``).
- :class:`ErrorPolicy` — what a handler's exception leads to (``decide`` → :class:`Decision`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_common.backoff import backoff
from herald_common.kafka.deadletter import Cause
from herald_common.kafka.producer import PERMANENT_PRODUCE_ERRORS


class PoisonRecord(Exception):
    """A handler raises this for a record it can never process (unparseable, say): it goes to the
    dead-letter topic at once instead of being retried."""


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """Commit, per partition, the offset after the longest run of handled records from the last
    commit on (a record still in flight holds back every later offset of its partition), every
    ``interval_s``, after flushing the producer: what is committed was handled and its downstream
    writes acknowledged."""

    max_batch: int = 500
    poll_timeout_ms: int = 500
    interval_s: float = 0.5

    def should_commit(self, now: float, last_commit: float) -> bool:
        return now - last_commit >= self.interval_s


@dataclass(frozen=True, slots=True)
class Backpressure:
    """At most ``concurrency`` records are handled at once and at most ``max_in_flight`` fetched but
    unfinished: the next fetch waits until half of that window is free (full-size fetches, not one
    per finished record), so memory stays bounded however slow a handler is. A slow record delays
    only the records with its key, not the next fetch."""

    concurrency: int = 64
    max_in_flight: int = 1000

    def may_fetch(self, in_flight: int) -> int:
        """How many records the next fetch may take; 0 means wait for records to finish first."""
        room = self.max_in_flight - in_flight
        return room if room >= max(1, self.max_in_flight // 2) else 0


Action = Literal["retry", "wait_out", "dead_letter", "give_up"]


@dataclass(frozen=True, slots=True)
class Decision:
    """``retry`` / ``wait_out`` after ``delay_s``; ``dead_letter`` with ``cause``; ``give_up``: raise,
    leaving the record uncommitted for the partition's next owner (the process is draining)."""

    action: Action
    delay_s: float = 0.0
    cause: Cause | None = None


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """What happens when a handler raises (handlers turn expected business failures into statuses
    themselves; this is for bugs and outages).

    - While the process drains nothing is waited out: give up, the record stays uncommitted.
    - :class:`PoisonRecord` (unreadable input) is dead-lettered at once.
    - A permanent produce error (a record over the size limit, an invalid topic: aiokafka's
      ``MessageSizeTooLargeError`` and the like, :data:`PERMANENT_PRODUCE_ERRORS`) is not an outage,
      however much it is a ``KafkaError``: the record is dead-lettered at once (cause ``refused``).
    - An outage of what the handler depends on (Redis or Kafka unreachable, timeouts) is waited out
      with backoff for as long as it lasts: the partition waits, nothing is dead-lettered.
    - Any other error is retried with backoff; attempt ``max_attempts`` failing dead-letters the
      record, so one poison record never blocks a partition.
    Without a ``dead_letter_topic`` nothing is dead-lettered: everything is retried.
    """

    max_attempts: int = 8
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    dead_letter_topic: str | None = None
    outages: tuple[type[BaseException], ...] = (
        RedisConnectionError,
        RedisTimeoutError,
        KafkaError,
        OSError,
        TimeoutError,
    )

    def delay(self, attempt: int) -> float:
        return backoff(attempt, base_s=self.base_delay_s, max_s=self.max_delay_s)

    permanent: tuple[type[BaseException], ...] = PERMANENT_PRODUCE_ERRORS

    def is_permanent(self, exc: BaseException) -> bool:
        return isinstance(exc, self.permanent)

    def is_outage(self, exc: BaseException) -> bool:
        return isinstance(exc, self.outages) and not self.is_permanent(exc)

    def decide(self, exc: BaseException, attempt: int, *, draining: bool = False) -> Decision:
        if draining:
            return Decision("give_up")
        can_dead_letter = self.dead_letter_topic is not None
        if isinstance(exc, PoisonRecord):
            if can_dead_letter:
                return Decision("dead_letter", cause="poison")
        elif self.is_permanent(exc):
            if can_dead_letter:
                return Decision("dead_letter", cause="refused")
        elif self.is_outage(exc):
            return Decision("wait_out", self.delay(attempt))
        elif attempt >= self.max_attempts and can_dead_letter:
            return Decision("dead_letter", cause="attempts_exhausted")
        return Decision("retry", self.delay(attempt))
