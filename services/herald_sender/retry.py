"""The sender's retry policy: what happens after a transient provider error.

- ``dead_letter`` after ``max_attempts`` attempts, or when the next attempt would come after the
  message's ``expires_at``;
- otherwise wait herald_common.backoff's ``backoff`` = min(max_delay, base · 2^(attempt-1)) ·
  jitter(0.5‥1), but never less than the provider's Retry-After;
- waits up to ``inplace_max_s`` happen in place (a blip costs less than a round trip through Redis and
  Kafka), longer ones go to the scheduler so the partition keeps moving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from herald_common.backoff import backoff
from herald_common.kafka import Cause
from herald_providers.base import TransientError


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["in_place", "schedule", "dead_letter"]
    delay_s: float = 0.0
    reason: str = ""
    cause: Cause | None = None  # why a dead letter is written (the metric's bounded reason)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    inplace_max_s: float = 0.5

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        return backoff(attempts, base_s=self.base_delay_s, max_s=self.max_delay_s, floor_s=retry_after)

    def decide(
        self, attempts: int, error: TransientError, *, now: float, expires_at: float | None
    ) -> Decision:
        if attempts >= self.max_attempts:
            reason = f"gave up after {attempts} attempts: {error.reason}"
            return Decision("dead_letter", reason=reason, cause="attempts_exhausted")
        delay = self.backoff(attempts, error.retry_after)
        if expires_at is not None and now + delay > expires_at:
            reason = f"expires before attempt {attempts + 1} is due: {error.reason}"
            return Decision("dead_letter", reason=reason, cause="expired")
        return Decision("in_place" if delay <= self.inplace_max_s else "schedule", delay, error.reason)
