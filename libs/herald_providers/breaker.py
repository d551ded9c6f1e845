"""Circuit breakers per provider and a failover chain across providers of one channel.

A :class:`CircuitBreaker` is *closed* (calls flow) until ``failure_threshold`` consecutive transient
failures open it; while *open* it refuses calls for ``cooldown_s``; then it is *half-open* and lets
exactly one probe through. The probe's success closes it, its failure opens it again for another
cool-down. A probe that never reports back (cancelled) is replaced after one more cool-down.

Breakers are kept in process, per sender replica, on purpose: each replica sees a provider outage
within its first few failed calls anyway, a shared breaker would add a Redis round trip to every
send and make provider failover depend on Redis being up, and a replica that opens a little later
than another costs only a few extra failed calls, which are retried.

:class:`FailoverChain` sends through the first provider whose breaker allows a call. A transient
failure counts against that provider's breaker and the same message is tried on the next one; a
throttled answer (429) does not count, since the provider is up and the shared rate limit is what
must adapt, but the message still moves on when ``failover_on_throttle`` is set. A permanent error
is the message's fault, not the provider's: it is raised at once and no other provider is tried.
When every provider failed, the last error is raised with the longest Retry-After any of them gave.
A transient failure that is not the provider's fault (``provider_fault=False``: one recipient
greylisted) does not count against the breaker either. The returned :class:`SendResult` names the
provider that accepted the message.

:meth:`FailoverChain.send_batch` does the same for a batch: the batch goes to the first provider
whose breaker allows it (in one request where the adapter batches, e.g. SendGrid), and only the
messages that failed transiently move on to the next. One batch counts as one call for the breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

from herald_providers.base import (
    OutboundMessage,
    Outcome,
    PermanentError,
    Provider,
    SendResult,
    TransientError,
    send_many,
    supports_batch,
)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_at: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self) -> bool:
        """May a call go now? In half-open state only one caller at a time gets True (the probe)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        if self._probe_at is not None and now - self._probe_at < self.cooldown_s:
            return False
        self._probe_at = now
        return True

    def retry_after(self) -> float:
        """Seconds until a call may be allowed again (0 when it may be now)."""
        if self._opened_at is None:
            return 0.0
        now = self._clock()
        until = self._opened_at + self.cooldown_s
        if self._probe_at is not None:
            until = max(until, self._probe_at + self.cooldown_s)
        return max(0.0, until - now)

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_at = None

    def record_failure(self) -> None:
        state = self.state
        if state is BreakerState.OPEN:
            return  # a call that started before the breaker opened
        self._failures += 1
        if state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probe_at = None


class FailoverChain:
    """A :class:`Provider` that tries its providers in order, skipping those whose circuit is open."""

    name = "failover"

    def __init__(
        self,
        providers: Sequence[Provider],
        breakers: Mapping[str, CircuitBreaker] | None = None,
        *,
        failover_on_throttle: bool = True,
    ) -> None:
        if not providers:
            raise ValueError("a failover chain needs at least one provider")
        if len({p.channel for p in providers}) != 1:
            raise ValueError("all providers of a chain must serve the same channel")
        self.providers = list(providers)
        self.channel = providers[0].channel
        self.breakers = dict(breakers or {})
        for p in providers:
            self.breakers.setdefault(p.name, CircuitBreaker())
        self._failover_on_throttle = failover_on_throttle
        self.supports_batch = any(supports_batch(p) for p in providers)

    async def start(self) -> None:
        for p in self.providers:
            await p.start()

    async def close(self) -> None:
        for p in self.providers:
            await p.close()

    async def send(self, msg: OutboundMessage) -> SendResult:
        last: TransientError | None = None
        for provider in self.providers:
            breaker = self.breakers[provider.name]
            if not breaker.allow():
                continue
            try:
                result = await provider.send(msg)
            except PermanentError:
                breaker.record_success()  # the provider answered; the message is at fault
                raise
            except TransientError as exc:
                last = _latest(last, exc)
                if exc.throttled or not exc.provider_fault:
                    breaker.record_success()
                    if exc.throttled and not self._failover_on_throttle:
                        raise
                else:
                    breaker.record_failure()
                continue
            breaker.record_success()
            return result
        if last is not None:
            raise last
        raise self._all_open()

    async def send_batch(self, msgs: Sequence[OutboundMessage]) -> list[Outcome]:
        """One outcome per message, in order; transient failures move on to the next provider."""
        results: list[Outcome | None] = [None] * len(msgs)
        last: dict[int, TransientError] = {}
        pending = list(range(len(msgs)))
        for provider in self.providers:
            if not pending:
                break
            breaker = self.breakers[provider.name]
            if not breaker.allow():
                continue
            outcomes = await send_many(provider, [msgs[i] for i in pending])
            answered, failed, again = False, False, []
            for i, outcome in zip(pending, outcomes, strict=True):
                if not isinstance(outcome, TransientError):
                    results[i] = outcome  # accepted, or the message's own permanent error
                    answered = True
                    continue
                last[i] = _latest(last.get(i), outcome)
                if outcome.throttled or not outcome.provider_fault:
                    answered = True
                    if outcome.throttled and not self._failover_on_throttle:
                        results[i] = outcome
                        continue
                else:
                    failed = True
                again.append(i)
            if failed and not answered:
                breaker.record_failure()
            else:
                breaker.record_success()
            pending = again
        for i in pending:
            results[i] = last[i] if i in last else self._all_open()
        return [r for r in results if r is not None]

    def _all_open(self) -> TransientError:
        wait = min(self.breakers[p.name].retry_after() for p in self.providers)
        return TransientError(
            "every provider's circuit is open", code="circuit_open", provider=self.name, retry_after=wait
        )


def _latest(previous: TransientError | None, error: TransientError) -> TransientError:
    """The error to report after trying another provider: the newest one, but keeping the longest
    Retry-After any provider asked for (the next attempt starts with the first provider again)."""
    if previous is not None and previous.retry_after is not None:
        error.retry_after = max(previous.retry_after, error.retry_after or 0.0)
    return error
