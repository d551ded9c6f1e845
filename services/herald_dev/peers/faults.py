"""Fault injection shared by the provider peers, a meter of accepted requests, small peer helpers.

A :class:`FaultPlan` decides, per request, whether the peer misbehaves. Fractions are applied
deterministically (an error rate of 0.25 fails exactly every 4th request), so tests do not depend
on luck. Precedence: ``down`` first, then 500, 429 and hang by their fractions; addresses or tokens
in ``invalid`` get the provider's real permanent error. Every field can be changed while the peer
runs (``plan.down = True``). With ``journal_on`` every answer is written to ``journal`` (when, for
which address, which status, which Retry-After), so tests can check how a client retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson
from aiohttp import web

Fault = Literal["down", "error", "throttle", "hang"]


@dataclass
class RateMeter:
    """Monotonic timestamps of accepted requests, to measure what rate a client achieved."""

    timestamps: list[float] = field(default_factory=list)

    def record(self, count: int = 1) -> None:
        now = time.monotonic()
        self.timestamps.extend([now] * count)

    @property
    def count(self) -> int:
        return len(self.timestamps)

    def rate(self, window_s: float | None = None) -> float:
        """Accepted requests per second over the last ``window_s`` (default: first to last)."""
        if not self.timestamps:
            return 0.0
        if window_s is not None:
            cutoff = time.monotonic() - window_s
            return sum(1 for t in self.timestamps if t >= cutoff) / window_s
        span = self.timestamps[-1] - self.timestamps[0]
        return len(self.timestamps) / span if span > 0 else float(len(self.timestamps))

    def reset(self) -> None:
        self.timestamps.clear()


@dataclass(frozen=True, slots=True)
class Answer:
    """One answered request: monotonic time, the address it was for, status and Retry-After."""

    at: float
    to: str
    status: int
    retry_after: float | None


@dataclass
class FaultPlan:
    error_rate: float = 0.0  # fraction of requests answered 500
    throttle_rate: float = 0.0  # fraction answered 429 with Retry-After
    retry_after_s: int = 1
    hang_rate: float = 0.0  # fraction that hang for hang_s before answering 503
    hang_s: float = 30.0
    invalid: set[str] = field(default_factory=set)  # addresses / numbers / tokens permanently invalid
    down: bool = False
    down_mode: Literal["503", "close"] = "503"  # answer 503, or drop the connection
    meter: RateMeter = field(default_factory=RateMeter)
    journal_on: bool = False
    journal: list[Answer] = field(default_factory=list)
    _acc: dict[str, float] = field(default_factory=dict, repr=False)
    _release: asyncio.Event | None = field(default=None, repr=False)

    def decide(self) -> Fault | None:
        if self.down:
            return "down"
        rates: tuple[tuple[Fault, float], ...] = (
            ("error", self.error_rate),
            ("throttle", self.throttle_rate),
            ("hang", self.hang_rate),
        )
        for fault, rate in rates:
            if rate <= 0:
                continue
            acc = self._acc.get(fault, 0.0) + rate
            if acc >= 1.0 - 1e-9:
                self._acc[fault] = acc - 1.0
                return fault
            self._acc[fault] = acc
        return None

    async def hang(self) -> None:
        """Stall like a stuck provider, until ``hang_s`` passes or the peer shuts down."""
        if self._release is None:
            self._release = asyncio.Event()
        try:
            await asyncio.wait_for(self._release.wait(), self.hang_s)
        except TimeoutError:
            pass

    def note(self, addresses: list[str], response: web.StreamResponse) -> web.StreamResponse:
        """Journal ``response`` for each address (when ``journal_on``) and return it."""
        if self.journal_on:
            now = time.monotonic()
            raw = response.headers.get("Retry-After")
            retry_after = float(raw) if raw and raw.replace(".", "", 1).isdigit() else None
            self.journal.extend(Answer(now, a, response.status, retry_after) for a in addresses)
        return response

    def release_hangs(self) -> None:
        if self._release is not None:
            self._release.set()
            self._release = None


ResponseFactory = Callable[[int, dict[str, str]], web.StreamResponse]


async def apply_faults(
    request: web.Request, plan: FaultPlan, respond: ResponseFactory
) -> web.StreamResponse | None:
    """The faulty answer to ``request`` under ``plan``, or None to handle it normally.

    ``respond(status, headers)`` builds the provider's own error document for a status.
    """
    fault = plan.decide()
    if fault is None:
        return None
    if fault == "down" and plan.down_mode == "close":
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError  # aiohttp drops the request without answering
    if fault == "hang":
        await plan.hang()
        return respond(503, {})
    if fault == "throttle":
        return respond(429, {"Retry-After": str(plan.retry_after_s)})
    return respond(503 if fault == "down" else 500, {})


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer, serialized with orjson (used by every peer)."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )
