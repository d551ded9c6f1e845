"""AutoPipeline on a real Valkey server: concurrent callers share round trips and each gets its own
replies (and only its own errors)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Connection
from redis.exceptions import DataError, NoScriptError, ResponseError

from herald_common.redisio import (
    KEYS_PER_COMMAND,
    AutoPipeline,
    FastConnection,
    Keys,
    redis_from_url,
    register_script,
)
from herald_common.suppressions import Suppressions
from tests.conftest import Infra, unique

pytestmark = [pytest.mark.integration]


async def test_concurrent_calls_share_a_pipeline_and_get_their_own_replies(infra: Infra) -> None:
    redis = redis_from_url(infra.redis_url)
    prefix = unique("ap")
    auto = AutoPipeline(redis)
    script = register_script(redis, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    sent: list[int] = []
    original = redis.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        sent.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    redis.pipeline = counting_pipeline  # type: ignore[method-assign]
    try:

        async def one(i: int) -> tuple[object, object]:
            key = f"{prefix}:{i}"
            await auto.call(lambda p: p.set(key, i))
            both = await auto.call(lambda p: (p.get(key), p.exists(key)))
            counted = await auto.call(lambda p: script(keys=[f"{prefix}:sum"], args=[i], client=p))
            return both, counted

        results = await asyncio.gather(*(one(i) for i in range(200)))
        assert [r[0] for r in results] == [[str(i).encode(), 1] for i in range(200)]
        assert max(int(r[1]) for r in results) == sum(range(200))  # type: ignore[call-overload]
        assert len(sent) <= 10, f"{len(sent)} round trips for 600 calls"

        async def bad() -> None:
            await auto.call(lambda p: p.incr(f"{prefix}:0:notanumber-key-is-fine"))
            await auto.call(lambda p: p.hget(f"{prefix}:0", "x"))  # WRONGTYPE: the key holds a string

        good = auto.call(lambda p: p.get(f"{prefix}:1"))
        outcome = await asyncio.gather(bad(), good, return_exceptions=True)
        assert isinstance(outcome[0], ResponseError) and outcome[1] == b"1"
    finally:
        await redis.aclose()


async def test_scripts_are_checked_until_loaded_and_reloaded_when_the_server_lost_them(infra: Infra) -> None:
    """redis-py asks SCRIPT EXISTS on every pipeline holding a script; a flush asks only until the
    server has them. When the server forgets them (a restart; SCRIPT FLUSH here), the callers of that
    flush get NOSCRIPT (retried like any Redis error) and the next flush loads them again."""
    if "+cluster://" in infra.redis_url:
        pytest.skip("a cluster pipeline sends scripts as EVAL with their body: nothing is checked")
    redis = redis_from_url(infra.redis_url)
    auto = AutoPipeline(redis)
    key = unique("ap-script")
    script = register_script(redis, f"-- {key}\nreturn redis.call('INCR', KEYS[1])")

    async def exists_calls() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))

    try:
        before = await exists_calls()
        assert await auto.call(lambda p: script(keys=[key], client=p)) == 1
        for i in range(5):
            assert await auto.call(lambda p: script(keys=[key], client=p)) == i + 2
        assert await exists_calls() - before == 1  # the first flush only

        await redis.script_flush()
        with pytest.raises(NoScriptError):
            await auto.call(lambda p: script(keys=[key], client=p))
        assert await auto.call(lambda p: script(keys=[key], client=p)) == 7
    finally:
        await redis.delete(key)
        await redis.aclose()


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    fast, plain = FastConnection(), Connection()
    for args in [
        ("SET", "k", "é", b"\x00\xff", 3, 0.1, 1764512345.123456, -7),
        ("SCRIPT EXISTS", "abc"),
        ("EVALSHA", "a" * 40, 1, "herald:t:{x}:n", memoryview(b"mv")),
    ]:
        assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))
    with pytest.raises(DataError):
        fast.pack_command("SET", "k", True)


async def test_reads_of_many_tenants_come_back_in_the_order_asked(infra: Infra) -> None:
    """get_many sends one MGET per tenant (in chunks) and check_many one SMISMEMBER and HMGET per
    tenant; the answers still line up with the questions, across tenants and chunk boundaries."""
    redis = redis_from_url(infra.redis_url)
    keys = Keys(unique("rd"))
    auto = AutoPipeline(redis)
    try:
        tenants = ["t1", "t2", "t3"]
        n = KEYS_PER_COMMAND + 7
        asked = [(tenants[i % 3], keys.contact(tenants[i % 3], f"c{i}")) for i in range(n)]
        for i, (_, key) in enumerate(asked):  # one SET each: a cluster refuses an MSET across slots
            if i % 5 == 0:
                await redis.set(key, f"v{i}")
        values = await auto.get_many(asked)
        assert values == [f"v{i}".encode() if i % 5 == 0 else None for i in range(n)]
        assert await auto.get_many([]) == []

        suppressions = Suppressions(redis, keys)
        await suppressions.add("t2", "b@example.com", reason="bounce")
        await suppressions.add("t1", "+15550100", reason="complaint")
        await redis.sadd(keys.suppressions("t3"), "c@example.com")  # an entry without details
        pairs = [
            ("t1", "a@example.com"),
            ("t2", "B@example.com"),
            ("t1", "+15550100"),
            ("t3", "c@example.com"),
            ("t2", "a@example.com"),
        ]
        assert await suppressions.check_many(pairs) == [None, "bounce", "complaint", "unknown", None]
        assert await suppressions.check("t2", "b@example.com") == "bounce"
    finally:
        await redis.aclose()
