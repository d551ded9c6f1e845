"""The gateway's aiohttp application: clients in cleanup contexts, middlewares, routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from herald_common import metrics
from herald_common.cache import TTLCache
from herald_common.health import add_health_routes
from herald_common.ids import NotificationIds, shared_secret
from herald_common.intake import Intake
from herald_common.kafka import make_producer
from herald_common.lifecycle import Lifecycle
from herald_common.redisio import Keys, make_redis
from herald_common.status import StatusStore
from herald_common.store import Store
from herald_common.topics import Topics
from herald_gateway import (
    admin,
    campaigns,
    cancel,
    events,
    notifications,
    quota,
    receipts,
    records,
    replies,
    resources,
    suppressions,
    triggers,
    unsubscribe,
    webhooks,
)
from herald_gateway.auth import auth_middleware
from herald_gateway.context import (
    CATEGORY_CACHE,
    IDS,
    INTAKE,
    KEY_CACHE,
    KEYS,
    LIFECYCLE,
    PRODUCER,
    REDIS,
    SETTINGS,
    STATUS,
    STORE,
    TENANT_CACHE,
    TOPICS,
)
from herald_gateway.deadlines import body_deadline_middleware
from herald_gateway.openapi import document
from herald_gateway.problems import json_response, problem_middleware
from herald_gateway.settings import GatewaySettings

log = structlog.get_logger()


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
        metrics.HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)


async def _shared_id_secret(redis: aioredis.Redis, keys: Keys) -> bytes:
    """Read (or create) the id secret in Redis, waiting out a Redis that is not up yet."""
    delay = 0.2
    while True:
        try:
            return await shared_secret(redis, keys.id_secret())
        except (RedisError, OSError) as exc:
            log.warning("waiting for redis to read the notification id secret", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


async def _clients(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = make_redis(settings)
    producer = make_producer(settings)
    await producer.start()
    app[REDIS] = redis
    app[PRODUCER] = producer
    app[STORE] = Store(redis, app[KEYS])
    app[STATUS] = StatusStore(redis, settings.status_ttl_s)
    app[IDS] = NotificationIds(settings.id_secret_bytes() or await _shared_id_secret(redis, app[KEYS]))
    app[INTAKE] = Intake(
        producer=producer,
        redis=redis,
        keys=app[KEYS],
        topics=app[TOPICS],
        store=app[STORE],
        category_cache=app[CATEGORY_CACHE],
        ids=app[IDS],
        idempotency_ttl_s=settings.idempotency_ttl_s,
        tenant_cache=app[TENANT_CACHE],
    )
    lifecycle = app[LIFECYCLE]
    lifecycle.add_check("redis", redis.ping)

    async def kafka_ok() -> bool:
        await producer.client.fetch_all_metadata()
        return True

    lifecycle.add_check("kafka", kafka_ok)
    yield
    await producer.stop()  # flushes whatever is buffered
    await redis.aclose()


async def _openapi(_request: web.Request) -> web.Response:
    return json_response(document())


async def _admin_openapi(_request: web.Request) -> web.Response:
    return json_response(document(admin=True))


def create_app(settings: GatewaySettings, lifecycle: Lifecycle) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, problem_middleware, auth_middleware, body_deadline_middleware],
    )
    app[SETTINGS] = settings
    app[LIFECYCLE] = lifecycle
    app[TOPICS] = Topics(settings.kafka_topic_prefix)
    app[KEYS] = Keys(settings.redis_prefix)
    app[KEY_CACHE] = TTLCache(settings.api_key_cache_s)
    app[CATEGORY_CACHE] = TTLCache(settings.api_key_cache_s)
    app[TENANT_CACHE] = TTLCache(settings.api_key_cache_s)
    quota.add_to(app)
    app.cleanup_ctx.append(_clients)
    add_health_routes(app, lifecycle, metrics=False)  # /metrics only on HERALD_HEALTH_PORT
    app.router.add_get("/v1/openapi.json", _openapi)
    app.router.add_get("/admin/v1/openapi.json", _admin_openapi)
    admin.add_routes(app)
    resources.add_routes(app)
    notifications.add_routes(app)
    cancel.add_routes(app)
    receipts.add_routes(app)
    webhooks.add_to(app)
    events.add_routes(app)
    triggers.add_routes(app)
    unsubscribe.add_to(app)
    records.add_to(app)  # message log, stats, engagement
    suppressions.add_routes(app)
    replies.add_routes(app)
    campaigns.add_routes(app)
    return app
