"""Circuit breaker and failover chain: pure unit tests with a fake clock and scripted providers."""

from __future__ import annotations

from collections import deque

import pytest

from herald_providers.base import OutboundMessage, PermanentError, ProviderError, SendResult, TransientError
from herald_providers.breaker import BreakerState, CircuitBreaker, FailoverChain


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedProvider:
    """Answers from a script of outcomes (None = accept); accepts once the script runs out."""

    channel = "sms"

    def __init__(self, name: str, *outcomes: ProviderError | None) -> None:
        self.name = name
        self.script = deque(outcomes)
        self.calls = 0
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def send(self, msg: OutboundMessage) -> SendResult:
        self.calls += 1
        outcome = self.script.popleft() if self.script else None
        if outcome is not None:
            raise outcome
        return SendResult(self.name, f"{self.name}-{self.calls}")


MSG = OutboundMessage(
    delivery_id="d1", tenant_id="t1", channel="sms", to="+14155552671", content={"text": "hi"}
)


def down() -> TransientError:
    return TransientError("HTTP 503", code="503")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_opens_after_n_consecutive_failures_only(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=clock)

    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # resets the streak
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()

    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert breaker.retry_after() == 10


def test_half_open_lets_one_probe_through_and_success_closes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()

    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one probe at a time

    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()


def test_failed_probe_reopens_for_another_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 10.0
    assert breaker.allow()

    breaker.record_failure()

    assert breaker.state is BreakerState.OPEN
    clock.now = 19.0
    assert not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()


def test_a_lost_probe_is_replaced_after_a_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 10.0
    assert breaker.allow()  # this probe never reports back

    clock.now = 15.0
    assert not breaker.allow()
    assert breaker.retry_after() == 5
    clock.now = 20.0
    assert breaker.allow()


async def test_chain_fails_over_on_transient_errors_and_names_the_provider(clock: FakeClock) -> None:
    primary, backup = ScriptedProvider("twilio", down()), ScriptedProvider("twilio-backup")
    chain = FailoverChain([primary, backup], {"twilio": CircuitBreaker(clock=clock)})

    result = await chain.send(MSG)

    assert result.provider == "twilio-backup"
    assert (primary.calls, backup.calls) == (1, 1)


async def test_chain_skips_an_open_provider_until_its_probe_succeeds(clock: FakeClock) -> None:
    primary = ScriptedProvider("a", down(), down())
    backup = ScriptedProvider("b")
    breakers = {"a": CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=clock)}
    chain = FailoverChain([primary, backup], breakers)

    providers = [(await chain.send(MSG)).provider for _ in range(5)]
    assert providers == ["b"] * 5
    assert primary.calls == 2  # opened after two failures, then skipped

    clock.now = 30.0
    assert (await chain.send(MSG)).provider == "a"  # the probe succeeds and closes the circuit
    assert breakers["a"].state is BreakerState.CLOSED


async def test_permanent_errors_do_not_fail_over() -> None:
    primary = ScriptedProvider("a", PermanentError("unsubscribed", code="21610", invalid_recipient=True))
    backup = ScriptedProvider("b")
    chain = FailoverChain([primary, backup])

    with pytest.raises(PermanentError):
        await chain.send(MSG)

    assert backup.calls == 0
    assert chain.breakers["a"].state is BreakerState.CLOSED


async def test_throttling_fails_over_without_counting_against_the_breaker() -> None:
    throttled = TransientError("429", code="429", throttled=True, retry_after=2)
    primary = ScriptedProvider("a", *[throttled] * 10)
    chain = FailoverChain([primary, ScriptedProvider("b")], {"a": CircuitBreaker(failure_threshold=1)})

    assert (await chain.send(MSG)).provider == "b"
    assert chain.breakers["a"].state is BreakerState.CLOSED

    strict = FailoverChain([primary, ScriptedProvider("b")], failover_on_throttle=False)
    with pytest.raises(TransientError) as info:
        await strict.send(MSG)
    assert info.value.throttled and info.value.retry_after == 2


async def test_all_failing_raises_the_last_transient_error_then_circuit_open(clock: FakeClock) -> None:
    a, b = ScriptedProvider("a", down(), down()), ScriptedProvider("b", down(), down())
    breakers = {n: CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=clock) for n in "ab"}
    chain = FailoverChain([a, b], breakers)

    with pytest.raises(TransientError) as first:
        await chain.send(MSG)
    assert first.value.code == "503"

    clock.now = 2.0
    with pytest.raises(TransientError) as second:
        await chain.send(MSG)
    assert second.value.code == "circuit_open" and second.value.retry_after == 3
    assert (a.calls, b.calls) == (1, 1)


async def test_chain_starts_and_closes_every_provider() -> None:
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    chain = FailoverChain([a, b])

    await chain.start()
    assert a.started and b.started
    await chain.close()
    assert not a.started and not b.started
    assert chain.channel == "sms"
