"""The sender's retry policy: what happens after a transient provider error.

- ``dead_letter`` after ``max_attempts`` attempts, or when the next attempt would come after the
  message's ``expires_at``;
- otherwise wait ``backoff`` = min(max_delay, base · 2^(attempt-1)) · jitter(0.5‥1), but never less than
  the provider's Retry-After;
- waits up to ``inplace_max_s`` happen in place (a blip costs less than a round trip through Redis and
  Kafka), longer ones go to the scheduler so the partition keeps moving.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from herald_providers.base import TransientError


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["in_place", "schedule", "dead_letter"]
    delay_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    inplace_max_s: float = 0.5

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)

    def decide(
        self, attempts: int, error: TransientError, *, now: float, expires_at: float | None
    ) -> Decision:
        if attempts >= self.max_attempts:
            return Decision("dead_letter", reason=f"gave up after {attempts} attempts: {error.reason}")
        delay = self.backoff(attempts, error.retry_after)
        if expires_at is not None and now + delay > expires_at:
            return Decision(
                "dead_letter", reason=f"expires before attempt {attempts + 1} is due: {error.reason}"
            )
        return Decision("in_place" if delay <= self.inplace_max_s else "schedule", delay, error.reason)
