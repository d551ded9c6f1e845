"""The consumer runtime's policies and the one backoff formula, hit directly: each decides, pure."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from herald_common.backoff import backoff
from herald_common.kafka import Backpressure, CommitPolicy, ErrorPolicy, PoisonRecord
from herald_providers.base import TransientError
from herald_sender.retry import RetryPolicy


def test_backoff_doubles_with_jitter_is_capped_and_honours_a_floor() -> None:
    for attempt, full in [(1, 0.2), (2, 0.4), (3, 0.8), (10, 5.0)]:
        delays = [backoff(attempt, base_s=0.2, max_s=5.0) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered, so retries of many records spread out
    assert backoff(1, base_s=0.2, max_s=5.0, floor_s=7.0) == 7.0  # Retry-After wins when longer
    assert backoff(10_000, base_s=0.2, max_s=5.0) <= 5.0  # an endless outage never overflows


def test_commit_policy_commits_once_per_interval() -> None:
    policy = CommitPolicy(interval_s=0.5)
    assert not policy.should_commit(now=10.4, last_commit=10.0)
    assert policy.should_commit(now=10.5, last_commit=10.0)


def test_backpressure_fetches_only_into_half_a_free_window() -> None:
    bp = Backpressure(concurrency=8, max_in_flight=100)
    assert bp.may_fetch(0) == 100
    assert bp.may_fetch(50) == 50
    assert bp.may_fetch(51) == 0  # wait: full-size fetches, not one per finished record
    assert bp.may_fetch(100) == 0
    assert Backpressure(concurrency=1, max_in_flight=1).may_fetch(0) == 1


def test_error_policy_decides_retry_outage_dead_letter_and_drain() -> None:
    policy = ErrorPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=1.0, dead_letter_topic="dlq")
    bug = ValueError("bug")
    assert policy.decide(bug, 1).action == "retry"
    assert 0.05 <= policy.decide(bug, 1).delay_s <= 0.1
    exhausted = policy.decide(bug, 3)
    assert (exhausted.action, exhausted.cause) == ("dead_letter", "attempts_exhausted")
    poison = policy.decide(PoisonRecord("unreadable"), 1)
    assert (poison.action, poison.cause) == ("dead_letter", "poison")  # at once
    for outage in (RedisConnectionError("down"), KafkaConnectionError(), TimeoutError(), OSError()):
        decision = policy.decide(outage, 50)
        assert decision.action == "wait_out" and decision.delay_s <= 1.0  # never dead-lettered
    assert policy.decide(bug, 1, draining=True).action == "give_up"
    assert policy.decide(PoisonRecord("x"), 1, draining=True).action == "give_up"


def test_permanent_produce_errors_are_dead_lettered_not_waited_out() -> None:
    """A record over the size limit is a KafkaError but never an outage: waiting it out would hold the
    partition's commit forever."""
    policy = ErrorPolicy(max_attempts=8, dead_letter_topic="dlq")
    for refused in (MessageSizeTooLargeError("big"), RecordListTooLargeError(), InvalidTopicError()):
        decision = policy.decide(refused, 1)
        assert (decision.action, decision.cause) == ("dead_letter", "refused")
    assert policy.decide(KafkaConnectionError(), 1).action == "wait_out"


def test_error_policy_without_a_dead_letter_topic_only_retries() -> None:
    policy = ErrorPolicy(max_attempts=2)
    assert policy.decide(PoisonRecord("x"), 1).action == "retry"
    assert policy.decide(ValueError("bug"), 5).action == "retry"


@pytest.mark.parametrize(
    ("attempts", "expires_in", "action", "cause"),
    [
        (5, None, "dead_letter", "attempts_exhausted"),
        (1, 0.01, "dead_letter", "expired"),
        (1, None, "in_place", None),
        (4, None, "schedule", None),
    ],
)
def test_sender_retry_policy_uses_the_same_backoff(
    attempts: int, expires_in: float | None, action: str, cause: str | None
) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.5, max_delay_s=30.0, inplace_max_s=0.5)
    error = TransientError("throttled", provider="twilio")
    expires_at = None if expires_in is None else 100.0 + expires_in
    decision = policy.decide(attempts, error, now=100.0, expires_at=expires_at)
    assert (decision.action, decision.cause) == (action, cause)
    throttled = TransientError("throttled", provider="twilio", retry_after=20.0)
    assert policy.decide(1, throttled, now=100.0, expires_at=None).delay_s == 20.0


def test_the_largest_ascii_email_the_content_model_allows_fits_in_one_record() -> None:
    """The limits are aligned: an inline email at the content model's maximum (all ASCII) is a request
    record the producer accepts, and so is its rendering as a delivery."""
    import orjson

    from herald_common.kafka import MAX_RECORD_BYTES, record_size
    from herald_common.schemas import EmailContent

    fields = EmailContent.model_json_schema()["properties"]
    longest = {
        name: "a"
        * max(int(s["maxLength"]) for s in [fields[name], *fields[name].get("anyOf", [])] if "maxLength" in s)
        for name in ("subject", "html", "text")
    }
    record = {"id": "n_" + "0" * 40, "tenant_id": "t" * 128, "lane": "transactional", "accepted_at": 1.0}
    value = orjson.dumps(
        {**record, "to": {"email": "a" * 64 + "@example.com"}, "content": {"email": longest}}
    )
    assert record_size(b"k" * 256, value) <= MAX_RECORD_BYTES


async def test_every_producer_states_the_record_limit() -> None:
    from herald_common.kafka import MAX_RECORD_BYTES, make_producer
    from herald_common.settings import CommonSettings

    producer = make_producer(CommonSettings(kafka_bootstrap="127.0.0.1:1"))  # type: ignore[call-arg]
    assert producer._max_request_size == MAX_RECORD_BYTES
