"""The one backoff formula: exponential with jitter, capped, never shorter than a floor.

``backoff(n)`` = min(max_s, base_s · 2^(n-1)) · jitter(0.5‥1), then raised to ``floor_s`` (a provider's
Retry-After) if that is longer. The consumer runner's :class:`ErrorPolicy`, the sender's
``RetryPolicy`` and the sender's outcome recording all wait this long between attempts.
"""

from __future__ import annotations

import random


def backoff(attempt: int, *, base_s: float, max_s: float, floor_s: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
    exponent = min(max(attempt - 1, 0), 62)  # no float overflow however long an outage lasts
    delay = min(max_s, base_s * 2**exponent) * random.uniform(0.5, 1.0)
    return max(delay, floor_s or 0.0)
