"""The fair share of an account's bulk rate between tenants, on a real Valkey server, with the clock
driven by the test: tenants' deliveries ask, park and come back as a sender and the scheduler would."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from herald_providers.fairshare import FairShare, share_interval

RATE = 100.0
TICK = 0.001


@pytest.fixture
async def redis(valkey_server_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(valkey_server_url)
    yield client
    await client.aclose()


def test_share_interval() -> None:
    assert share_interval(100.0, 1) == pytest.approx(0.01)
    assert share_interval(100.0, 2) == pytest.approx(0.02)
    assert share_interval(100.0, 4) == pytest.approx(0.04)
    assert share_interval(100.0, 0) == pytest.approx(0.01)


async def _simulate(
    share: FairShare, backlog: dict[str, tuple[float, int, float]], until: float
) -> list[tuple[float, str]]:
    """Each tenant's ``count`` deliveries arrive from ``start`` on, ``every`` seconds apart (a backlog
    read as fast as a sender reads: a millisecond); parked ones come back when due, those told to
    wait ask again after the wait. Returns (time, tenant) of every delivery told to go."""
    events: list[tuple[float, int, str, bool]] = []  # (when, seq, tenant, returning)
    seq = 0
    for tenant, (start, count, every) in backlog.items():
        for i in range(count):
            heapq.heappush(events, (start + i * every, seq, tenant, False))
            seq += 1
    sent: list[tuple[float, str]] = []
    while events:
        when, _, tenant, returning = heapq.heappop(events)
        if when > until:
            break
        answer = await share.ask(tenant, returning=returning, now=when)
        if answer.action == "go":
            sent.append((when + answer.delay_s, tenant))  # it waits for its slot
        else:
            seq += 1
            heapq.heappush(events, (when + max(answer.delay_s, TICK), seq, tenant, answer.action == "park"))
    return sent


def _rate(sent: list[tuple[float, str]], start: float, end: float) -> Counter[str]:
    return Counter(tenant for when, tenant in sent if start <= when < end)


async def test_a_tenant_alone_gets_the_whole_rate(redis: Redis, key_prefix: str) -> None:
    share = FairShare(redis, account="twilio:a", rate=RATE, prefix=key_prefix, tolerance_s=0.2)
    sent = await _simulate(share, {"a": (1000.0, 600, TICK)}, until=1004.0)
    counts = _rate(sent, 1001.0, 1003.0)  # after the first tolerance's burst
    assert counts["a"] == pytest.approx(2 * RATE, rel=0.05)
    # each delivery went once, in about the order it came
    assert len(sent) == len({(w, t) for w, t in sent})


async def test_two_busy_tenants_get_half_each_and_the_rest_is_reused(redis: Redis, key_prefix: str) -> None:
    share = FairShare(redis, account="twilio:b", rate=RATE, prefix=key_prefix, tolerance_s=0.2)
    # a's backlog arrives first and is far larger; b's arrives a second later
    sent = await _simulate(share, {"a": (1000.0, 800, TICK), "b": (1001.0, 150, TICK)}, until=1008.0)
    both = _rate(sent, 1001.5, 1003.5)
    total = both["a"] + both["b"]
    assert total == pytest.approx(2 * RATE, rel=0.1)
    assert 0.45 <= both["b"] / total <= 0.55
    # once b is done, a is alone again and takes the whole rate
    b_done = max(when for when, tenant in sent if tenant == "b")
    after = _rate(sent, b_done + 0.5, b_done + 1.5)
    assert after["a"] == pytest.approx(RATE, rel=0.1) and not after["b"]


async def test_an_occasional_tenant_leaves_its_unused_share_to_the_busy_one(
    redis: Redis, key_prefix: str
) -> None:
    share = FairShare(redis, account="twilio:c", rate=RATE, prefix=key_prefix, tolerance_s=0.2)
    sent = await _simulate(share, {"busy": (1000.0, 900, TICK), "light": (1000.0, 30, 0.1)}, until=1004.0)
    counts = _rate(sent, 1000.5, 1002.5)
    # the light tenant's messages all go when they come; the busy one gets the rest of the rate, less
    # the instants the light one counts as busy (one share interval after each of its messages)
    assert counts["light"] == 20
    assert counts["busy"] >= 0.85 * (2 * RATE - 20)


async def test_a_tenant_far_ahead_waits_in_place_beyond_the_horizon(redis: Redis, key_prefix: str) -> None:
    share = FairShare(redis, account="twilio:d", rate=RATE, prefix=key_prefix, tolerance_s=0.1, horizon_s=1.0)
    gone: list[float] = []
    actions = Counter()
    for _ in range(150):
        answer = await share.ask("a", now=1000.0)
        actions[answer.action] += 1
        if answer.action == "go":
            gone.append(answer.delay_s)
    # 0.1 s goes at once, up to 1 s is parked, the rest waits in place (nothing stored for it)
    assert actions["go"] == pytest.approx(11, abs=1)
    assert actions["park"] == pytest.approx(90, abs=2)
    assert actions["wait"] == 150 - actions["go"] - actions["park"]
    assert gone == pytest.approx([i / RATE for i in range(len(gone))])  # each at its slot


async def test_the_shared_rate_follows_the_buckets_effective_rate(redis: Redis, key_prefix: str) -> None:
    share = FairShare(redis, account="twilio:e", rate=RATE, prefix=key_prefix, tolerance_s=0.0, lead_s=0.0)
    await redis.hset(share.bucket_key, "eff", "50.0")  # the provider throttled us: half the rate
    first = await share.ask("a", now=1000.0)
    second = await share.ask("a", now=1000.0)
    assert first.action == "go" and first.delay_s == 0 and second.action == "park"
    assert second.delay_s == pytest.approx(2 / 50.0)
