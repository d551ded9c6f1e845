"""Dead letters of every service on the real broker: the runner dead-letters a poison record at once
(counted by service and cause), and ``herald dlq list|replay`` reads the router's and the tracker's
dead-letter topics as well as the sender's, and replays a record onto its source topic."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.dlq import DeadLetterQueue, read_dead_letters
from herald_common.kafka import (
    DLQ_REASON,
    DLQ_SOURCE_TOPIC,
    ConsumerRunner,
    ErrorPolicy,
    PoisonRecord,
    create_topics,
    make_producer,
)
from herald_common.lifecycle import Lifecycle
from herald_common.redisio import redis_from_url
from herald_common.settings import CommonSettings, load
from herald_common.topics import Topics
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import Env, eventually, running
from tests.integration.test_runner import runner_settings

pytestmark = [pytest.mark.integration]


def _dead_letters(service: str, reason: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("herald_dead_letters_total", {"service": service, "reason": reason})
        or 0.0
    )


async def test_poison_record_is_dead_lettered_at_once_and_counted_by_service_and_cause(
    infra: Infra,
) -> None:
    topic, dlq, service = unique("poison"), unique("dlq"), unique("svc")
    await create_topics(infra.bootstrap, [topic, dlq], 1)
    settings = runner_settings(infra)
    producer = make_producer(settings)
    await producer.start()
    await producer.send_and_wait(topic, b"garbage", key=b"k", headers=[("trace", b"1")])
    await producer.send_and_wait(topic, b"fine", key=b"k")
    calls: list[bytes] = []

    async def handler(rec: ConsumerRecord) -> None:
        calls.append(rec.value)
        if rec.value == b"garbage":
            raise PoisonRecord("unreadable")

    lifecycle = Lifecycle()
    runner = ConsumerRunner(
        service=service,
        topics=[topic],
        group_id=unique("g"),
        settings=settings,
        handler=handler,
        producer=producer,
        lifecycle=lifecycle,
        error_policy=ErrorPolicy(dead_letter_topic=dlq),
    )
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: b"fine" in calls, timeout_s=30)
        assert calls == [b"garbage", b"fine"]  # dead-lettered at once, the key moved on in order
    finally:
        lifecycle.request_stop("test")
        await asyncio.wait_for(task, timeout=20)
        await producer.stop()
    [letter] = await read_dead_letters(infra.bootstrap, dlq)
    assert (letter.key, letter.value) == (b"k", b"garbage")
    assert letter.headers["trace"] == "1" and letter.headers[DLQ_SOURCE_TOPIC] == topic
    assert "unreadable" in letter.headers[DLQ_REASON]
    # the metric says which service gave up and why, in bounded labels
    assert _dead_letters(service, "poison") == 1
    assert _dead_letters(service, "attempts_exhausted") == 0


def _herald(env: Env, *args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run(
        [sys.executable, "-m", "herald_cli", "dlq", *args],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


async def test_dlq_lists_and_replays_the_router_and_tracker_dead_letters(infra: Infra) -> None:
    env = Env(infra.bootstrap, infra.redis_url, unique("dlq"))
    await env.create_topics(partitions=2)
    topics = Topics(env.prefix)
    settings = load(CommonSettings, **env.settings())
    redis = redis_from_url(infra.redis_url)
    router_before = _dead_letters("router", "poison")
    try:
        services = [
            (serve_router, load(RouterSettings, **env.settings())),
            (serve_tracker, load(TrackerSettings, **env.settings())),
        ]
        async with running(*services):
            producer = make_producer(settings)
            await producer.start()
            try:
                await producer.send_and_wait(topics.requests("transactional"), b"{not json", key=b"t:c1")
                await producer.send_and_wait(topics.status, b"[]", key=b"t:n1")
            finally:
                await producer.stop()
            queue = DeadLetterQueue(settings, redis)

            async def both_dead_lettered() -> bool:
                return {line["service"] for line in await queue.describe()} == {"router", "tracker"}

            await eventually(both_dead_lettered, timeout_s=30, interval_s=0.2)
        assert _dead_letters("router", "poison") == router_before + 1

        code, listed, _ = _herald(env, "list")
        assert code == 0
        by_service = {line["service"]: line for line in listed}
        assert set(by_service) == {"router", "tracker"}
        assert by_service["router"]["source_topic"] == topics.requests("transactional")
        assert by_service["tracker"]["source_topic"] == topics.status
        assert by_service["tracker"]["topic"] == topics.dead_letters("tracker")
        assert "unreadable" in by_service["tracker"]["reason"]
        assert not any(line["replayed"] for line in listed)

        code, only, _ = _herald(env, "list", "--service", "tracker")
        assert code == 0 and [line["service"] for line in only] == ["tracker"]

        code, replayed, stderr = _herald(env, "replay", "--all", "--service", "tracker")
        assert code == 0 and "replayed 1 dead letter(s)" in stderr
        assert [line["offset"] for line in replayed] == [by_service["tracker"]["offset"]]
        on_status = await read_dead_letters(infra.bootstrap, topics.status)
        assert [(r.key, r.value) for r in on_status] == [(b"t:n1", b"[]")] * 2  # the original, the replay
        replay = on_status[-1] if on_status[-1].offset > on_status[0].offset else on_status[0]
        tracker_dlq = topics.dead_letters("tracker")
        assert replay.headers["x-herald-replayed-from"].startswith(f"{tracker_dlq}:")
        assert DLQ_REASON not in replay.headers and DLQ_SOURCE_TOPIC not in replay.headers

        code, again, stderr = _herald(env, "replay", "--all")  # the router's only: tracker's is done
        assert code == 0 and [line["service"] for line in again] == ["router"]
        code, listed, _ = _herald(env, "list")
        assert all(line["replayed"] for line in listed)
    finally:
        await redis.aclose()
