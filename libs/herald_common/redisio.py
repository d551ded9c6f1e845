"""Redis access: one client per process (redis.asyncio, pooled) and the key layout, in one place."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from herald_common.settings import CommonSettings

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def make_redis(settings: CommonSettings) -> aioredis.Redis:
    return redis_from_url(settings.redis_url)


def redis_from_url(url: str) -> aioredis.Redis:
    """The process' client: a single server for ``redis://`` / ``rediss://`` / ``unix://`` URLs, the
    Redis Cluster client for ``redis+cluster://host:port`` (any node: the client discovers the rest).
    The cluster client serves the same commands Herald uses (every script and transaction keeps its
    keys in one slot, README: Redis key layout), so it is typed as the single-server client."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in CLUSTER_SCHEMES:
        cluster = RedisCluster.from_url(
            f"{CLUSTER_SCHEMES[scheme]}://{rest}",
            decode_responses=False,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
            health_check_interval=30,
            max_connections=256,
        )
        return cast(aioredis.Redis, cluster)
    fast = {"redis": FastConnection, "rediss": FastSSLConnection}.get(scheme)
    return aioredis.Redis.from_url(
        url,
        **({"connection_class": fast} if fast is not None else {}),
        decode_responses=False,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        max_connections=256,
        retry_on_timeout=True,
    )


class _HiredisPacking:
    """Commands packed by hiredis (C) instead of redis-py's Python packer: the same bytes, a fifth of
    the CPU, which is most of what a Redis-bound worker spends per command. Anything hiredis refuses
    (a memoryview, a bool) goes through redis-py's packer, which says what is wrong with it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:  # "SCRIPT EXISTS": the server wants two words
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc]


class FastConnection(_HiredisPacking, aioredis.Connection):
    pass


class FastSSLConnection(_HiredisPacking, aioredis.SSLConnection):
    pass


class Script(AsyncScript):
    """A Lua script that also queues on a cluster pipeline: redis-py's script awaits a cluster
    pipeline (which would reset its queue) and never loads itself there, so on one it queues EVAL
    with the body (the server caches it) instead of EVALSHA."""

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if isinstance(client, ClusterPipeline):
            keys, args = list(keys or []), list(args or [])
            return client.eval(self.script, len(keys), *keys, *args)
        return await super().__call__(keys, args, client)


def register_script(redis: aioredis.Redis, script: str) -> Script:
    """``redis.register_script`` for either client (see :class:`Script`)."""
    return Script(redis, script)


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key Herald uses. Tenant data is always under the tenant's id, in a hash tag
    (``herald:t:{<tenant>}:…``); the few global keys carry no tag (README: Redis key layout)."""

    prefix: str = "herald"

    def t(self, tenant_id: str) -> str:
        """The start of every tenant-scoped key: the tenant id is the hash tag, so all of a tenant's
        keys share one Redis Cluster slot and any script or transaction may combine them."""
        return f"{self.prefix}:t:{{{tenant_id}}}"

    def tenant(self, tenant_id: str) -> str:
        return f"{self.t(tenant_id)}:tenant"

    def tenant_keys(self, tenant_id: str) -> str:
        return f"{self.t(tenant_id)}:keys"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}:apikey:{key_hash}"

    def contact(self, tenant_id: str, contact_id: str) -> str:
        return f"{self.t(tenant_id)}:contact:{contact_id}"

    def template(self, tenant_id: str, template_id: str) -> str:
        return f"{self.t(tenant_id)}:template:{template_id}"

    def suppressions(self, tenant_id: str) -> str:
        return f"{self.t(tenant_id)}:suppressed"

    def suppression_info(self, tenant_id: str) -> str:
        """Hash: suppressed address → its details (herald_common.suppressions)."""
        return f"{self.t(tenant_id)}:suppression-info"

    def suppression_index(self, tenant_id: str, channel: str) -> str:
        """Sorted set: a channel's suppressed addresses, for paging (herald_common.suppressions)."""
        return f"{self.t(tenant_id)}:suppression-index:{channel}"

    def message_log(self, tenant_id: str, contact_id: str) -> str:
        """Sorted set: a contact's notification ids by time (herald_common.message_log)."""
        return f"{self.t(tenant_id)}:log:{contact_id}"

    def stats(self, tenant_id: str, day: str) -> str:
        """Hash: one day's counters per dimension value (herald_common.stats)."""
        return f"{self.t(tenant_id)}:stats:{day}"

    def notification(self, tenant_id: str, notification_id: str) -> str:
        return f"{self.t(tenant_id)}:n:{notification_id}"

    def idempotency(self, tenant_id: str, key: str) -> str:
        return f"{self.t(tenant_id)}:idem:{key}"

    def id_secret(self) -> str:
        """The secret that signs notification ids, created once and shared by every gateway."""
        return f"{self.prefix}:id-secret"

    def ledger(self, tenant_id: str, delivery_id: str) -> str:
        """A delivery's ledger entry: under the tenant, as the sender's begin script reads it with the
        tenant's cancellation keys."""
        return f"{self.t(tenant_id)}:ledger:{delivery_id}"

    def delayed(self, part: str) -> str:
        """The scheduler's delayed-work keys (``due``, ``leases``, ``items``, ``owners``, ``claims``),
        one hash tag."""
        return f"{self.prefix}:{{delayed}}:{part}"

    def cancelled(self, tenant_id: str, notification_id: str) -> str:
        """When a notification was cancelled by id (Unix seconds)."""
        return f"{self.t(tenant_id)}:cancel:n:{notification_id}"

    def cancelled_key(self, tenant_id: str, key: str) -> str:
        """When a cancellation key was last cancelled: it cancels notifications accepted before then."""
        return f"{self.t(tenant_id)}:cancel:k:{key}"

    def waiting_with_key(self, tenant_id: str, key: str) -> str:
        """Notifications with a cancellation key waiting in the scheduler (scheduled or held)."""
        return f"{self.t(tenant_id)}:waiting:{key}"

    def frequency(self, tenant_id: str, contact: str, category: str) -> str:
        """Notifications counted against a contact's frequency caps of one category."""
        return f"{self.t(tenant_id)}:freq:{category}:{contact}"

    def receipt_seen(self, provider: str, event_id: str) -> str:
        return f"{self.prefix}:receipt:{provider}:{event_id}"

    def dead_letter_replayed(self, topic: str, partition: int, offset: int) -> str:
        return f"{self.prefix}:dlq:replayed:{topic}:{partition}:{offset}"

    def contact_index(self, tenant_id: str) -> str:
        """Sorted set (all scores 0, so ordered by id) of the tenant's contact ids: listing without SCAN."""
        return f"{self.t(tenant_id)}:contacts"

    def campaigns(self, tenant_id: str) -> str:
        """Sorted set of the tenant's campaign ids by creation time (herald_common.campaigns)."""
        return f"{self.t(tenant_id)}:campaigns"

    def campaign(self, tenant_id: str, campaign_id: str, part: str = "") -> str:
        """A campaign's hash, or one of its parts (audience, recipients, records, counts, lease…)."""
        return f"{self.t(tenant_id)}:campaign:{campaign_id}" + (f":{part}" if part else "")

    def campaigns_active(self) -> str:
        """Sorted set of ``tenant\x1fcampaign`` to fan out, scored by when they are due."""
        return f"{self.prefix}:campaigns:active"

    def webhooks(self, tenant_id: str) -> str:
        """Hash: webhook endpoint id → the endpoint (herald_common.webhooks)."""
        return f"{self.t(tenant_id)}:webhooks"

    def webhook_health(self, tenant_id: str, endpoint_id: str) -> str:
        """Hash: one endpoint's failure streak and pause (herald_common.webhooks.store)."""
        return f"{self.t(tenant_id)}:webhook-health:{endpoint_id}"


Build = Callable[[Pipeline], Awaitable[object] | object]


# Per client, the scripts (by SHA) known to be loaded on its server. redis-py checks every script of a
# pipeline with SCRIPT EXISTS, one more round trip, on each execute; an auto-pipeline flush does so only
# until the server has them. A NOSCRIPT reply (the server restarted) empties the set: those callers get
# the error (a Redis error, retried as any other), and the next flush loads the scripts again.
_LOADED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _skip_known_scripts(pipe: Any, loaded: set[str]) -> set[str]:
    """The SHAs of the pipeline's scripts; the check is dropped when the server has all of them."""
    queued = getattr(pipe, "scripts", None)
    if not queued:
        return set()
    shas = {script.sha for script in queued}
    if shas <= loaded:
        queued.clear()
    return shas


async def execute(redis: aioredis.Redis, pipe: Any, *, raise_on_error: bool = True) -> list[Any]:
    """``pipe.execute()``, checking its scripts only until ``redis``'s server is known to hold them."""
    loaded = _LOADED.setdefault(redis, set())
    scripts = _skip_known_scripts(pipe, loaded)
    try:
        replies: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
    except NoScriptError:
        loaded.clear()  # the server lost its scripts (a restart): the next execute loads them
        raise
    if any(isinstance(r, NoScriptError) for r in replies):
        loaded.clear()
    else:
        loaded.update(scripts)
    return replies


async def queue_all(builds: list[Build], pipe: Pipeline) -> None:
    """Queue several builds' commands on one pipeline, in order (one :meth:`AutoPipeline.call`)."""
    for build in builds:
        queued = build(pipe)
        if inspect.isawaitable(queued) and queued is not pipe:
            await queued


class AutoPipeline:
    """Sends the Redis commands that concurrent handlers issue in the same event-loop turn as one
    pipeline: one write and one read for many commands instead of a round trip each. A consumer
    with 64 records in flight then pays Redis' per-call cost a few times per batch, not per record.

    ``await auto.call(build)`` adds ``build(pipe)``'s commands to the next flush and returns their
    replies (a list, or the single reply when ``build`` queued one command); ``call_many`` always
    returns the list, for builds that queue any number of commands. Not transactional:
    commands of different callers interleave, each caller's in its own order.
    """

    def __init__(self, redis: aioredis.Redis, max_commands: int = 2000) -> None:
        self.redis = redis
        self.max_commands = max_commands
        self._pending: list[tuple[Build, asyncio.Future[Any], bool]] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, build: Build) -> Any:
        return await self._call(build, True)

    async def call_many(self, build: Build) -> list[Any]:
        replies: list[Any] = await self._call(build, False)
        return replies

    async def get_many(self, keyed: list[tuple[str, str]]) -> list[Any]:
        """GET many keys, each given as ``(slot tag, key)`` (the tenant: its keys share a cluster slot),
        values in the order given: one MGET per tag (in chunks) instead of a command per key, which
        is most of what a batch of reads costs both redis-py and the server."""
        chunks = slot_chunks([tag for tag, _ in keyed])

        def build(pipe: Any) -> None:
            for _, at in chunks:
                # execute_command: a cluster pipeline blocks pipe.mget(), but one slot's MGET is fine
                pipe.execute_command("MGET", *(keyed[i][1] for i in at))

        replies = await self.call_many(build) if keyed else []
        values: list[Any] = [None] * len(keyed)
        for (_, at), reply in zip(chunks, replies, strict=True):
            for i, value in zip(at, reply, strict=True):
                values[i] = value
        return values

    async def _call(self, build: Build, unwrap: bool) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((build, future, unwrap))
        if len(self._pending) >= self.max_commands:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[tuple[Build, asyncio.Future[Any], bool]]) -> None:
        counts = []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for build, _, _ in batch:
                    before = len(pipe)
                    queued = build(pipe)
                    # a command returns the pipeline itself; awaiting a cluster pipeline resets it
                    if inspect.isawaitable(queued) and queued is not pipe:
                        await queued
                    counts.append(len(pipe) - before)
                replies = await execute(self.redis, pipe, raise_on_error=False)
        except Exception as exc:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        offset = 0
        for (_, future, unwrap), count in zip(batch, counts, strict=True):
            mine = replies[offset : offset + count]
            offset += count
            if future.done():
                continue
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine[0] if unwrap and count == 1 else mine)


KEYS_PER_COMMAND = 1000  # most keys or members one MGET, SMISMEMBER or HMGET carries


def slot_chunks(tags: list[str]) -> list[tuple[str, list[int]]]:
    """The positions of ``tags`` grouped by tag (one cluster slot each), in chunks of at most
    :data:`KEYS_PER_COMMAND`: one multi-key command per chunk."""
    groups: dict[str, list[int]] = {}
    for i, tag in enumerate(tags):
        groups.setdefault(tag, []).append(i)
    return [
        (tag, at[start : start + KEYS_PER_COMMAND])
        for tag, at in groups.items()
        for start in range(0, len(at), KEYS_PER_COMMAND)
    ]


_SHARED: weakref.WeakKeyDictionary[Any, AutoPipeline] = weakref.WeakKeyDictionary()


def auto_pipeline(redis: aioredis.Redis) -> AutoPipeline:
    """The client's one :class:`AutoPipeline`: every part of a process (a tracker's status fold and its
    observers, a router's reads) then flushes in the same pipeline, one write and read per loop turn."""
    auto = _SHARED.get(redis)
    if auto is None:
        auto = _SHARED[redis] = AutoPipeline(redis)
    return auto
