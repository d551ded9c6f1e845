"""The shared outbound rate limit against a real Valkey server, with replicas as separate clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from herald_providers.ratelimit import Lane, RateLimiter

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
async def make_limiter(valkey_server_url: str, key_prefix: str) -> AsyncIterator[MakeLimiter]:
    """Each call is a new "replica": its own Redis connection pool, the same account and prefix."""
    clients: list[Redis] = []

    def _make(**kwargs: Any) -> RateLimiter:
        client = Redis.from_url(valkey_server_url)
        clients.append(client)
        options: dict[str, Any] = {
            "account": "sendgrid-main",
            "rate": 100.0,
            "burst": 10,
            "prefix": key_prefix,
        }
        return RateLimiter(client, **(options | kwargs))

    yield _make
    for client in clients:
        await client.aclose()


async def _drive(
    limiter: RateLimiter, until: float, grants: list[float], lane: Lane = "transactional"
) -> None:
    while time.monotonic() < until:
        wait = await limiter.acquire(lane=lane)
        if wait == 0:
            grants.append(time.monotonic())
        else:
            await asyncio.sleep(min(wait, max(0.0, until - time.monotonic())))


async def test_two_replicas_together_never_exceed_rate_times_t_plus_burst(make_limiter: MakeLimiter) -> None:
    a, b = make_limiter(rate=200.0, burst=20), make_limiter(rate=200.0, burst=20)
    grants: list[float] = []
    start = time.monotonic()
    until = start + 0.8

    await asyncio.gather(*(_drive(limiter, until, grants) for limiter in (a, b) for _ in range(3)))

    elapsed = max(grants) - start
    assert len(grants) <= 200 * elapsed + 20 + 1
    assert len(grants) >= 0.8 * (200 * elapsed + 20)  # and the limit is actually used, not starved
    for t in (start + 0.2, start + 0.4, start + 0.6):  # no window exceeds its budget either
        in_window = [g for g in grants if g <= t]
        assert len(in_window) <= 200 * (t - start) + 20 + 1


async def test_bulk_only_takes_what_is_left_above_the_transactional_reserve(
    make_limiter: MakeLimiter,
) -> None:
    bulk_replica = make_limiter(rate=0.01, burst=10, reserve_fraction=0.2)
    tx_replica = make_limiter(rate=0.01, burst=10, reserve_fraction=0.2)

    bulk = [await bulk_replica.acquire(lane="bulk") for _ in range(9)]
    tx = [await tx_replica.acquire(lane="transactional") for _ in range(3)]

    assert bulk[:8] == [0.0] * 8 and bulk[8] > 0
    assert tx[:2] == [0.0, 0.0] and tx[2] > 0
    assert await bulk_replica.acquire(lane="bulk") > tx[2]  # bulk must wait for the reserve to refill too
    with pytest.raises(ValueError):
        await bulk_replica.acquire(9, lane="bulk")


async def test_waits_track_the_rate(make_limiter: MakeLimiter) -> None:
    # A slow rate, so the wait it announces does not depend on how busy the machine is.
    limiter = make_limiter(rate=2.0, burst=5)

    assert [await limiter.acquire() for _ in range(5)] == [0.0] * 5
    wait = await limiter.acquire()

    assert 0.25 < wait <= 0.5 + 1e-6
    await asyncio.sleep(wait)
    assert await limiter.acquire() == 0.0


async def test_throttling_halves_the_rate_for_every_replica_and_it_recovers(
    make_limiter: MakeLimiter,
) -> None:
    a = make_limiter(rate=4.0, burst=1, recovery_per_s=5.0, recover_interval_s=0.0)
    b = make_limiter(rate=4.0, burst=1, recovery_per_s=5.0, recover_interval_s=0.0)

    assert await a.on_throttled() == pytest.approx(2.0)
    assert await a.on_throttled() == pytest.approx(2.0)  # a burst of 429s within the cool-down counts once
    assert await b.effective_rate() == pytest.approx(2.0)
    await b.acquire()
    assert await b.acquire() == pytest.approx(1 / 2, abs=0.1)  # b now refills at half speed

    await asyncio.sleep(0.05)
    await b.on_success()  # recovers by 500 %/s of the full rate
    recovered = await a.effective_rate()
    assert 2.0 < recovered <= 4.0
    await asyncio.sleep(0.25)
    await a.on_success()
    assert await b.effective_rate() == pytest.approx(4.0)


async def test_throttling_never_goes_below_the_floor(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate=100.0, throttle_cooldown_s=0.0)

    rates = [await limiter.on_throttled() for _ in range(6)]

    assert rates == pytest.approx([50.0, 25.0, 12.5, 10.0, 10.0, 10.0])


async def test_state_lives_under_the_prefix_and_expires(
    make_limiter: MakeLimiter, redis_client: Redis, key_prefix: str
) -> None:
    limiter = make_limiter()
    await limiter.acquire()

    keys = [k.decode() async for k in redis_client.scan_iter(match=f"{key_prefix}:*")]

    assert keys == [f"{key_prefix}:ratelimit:{{sendgrid-main}}"]
    assert 0 < await redis_client.pttl(keys[0]) <= 60_000


async def test_on_success_at_full_rate_does_not_touch_redis(
    make_limiter: MakeLimiter, redis_client: Redis, key_prefix: str
) -> None:
    limiter = make_limiter()

    await limiter.on_success()

    assert [k async for k in redis_client.scan_iter(match=f"{key_prefix}:*")] == []
