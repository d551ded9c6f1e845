"""Typed keys for what the gateway keeps on its aiohttp application."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer

from herald_common.cache import TTLCache
from herald_common.ids import NotificationIds
from herald_common.intake import Intake
from herald_common.lifecycle import Lifecycle
from herald_common.redisio import Keys
from herald_common.schemas import Tenant
from herald_common.status import StatusStore
from herald_common.store import Store
from herald_common.topics import Topics
from herald_gateway.settings import GatewaySettings

SETTINGS = web.AppKey("settings", GatewaySettings)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
REDIS = web.AppKey("redis", aioredis.Redis)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
STORE = web.AppKey("store", Store)
STATUS = web.AppKey("status", StatusStore)
TOPICS = web.AppKey("topics", Topics)
IDS = web.AppKey("ids", NotificationIds)
KEYS = web.AppKey("keys", Keys)
INTAKE = web.AppKey("intake", Intake)  # publishes notification requests (lane, ids, idempotency, produce)
KEY_CACHE = web.AppKey("key_cache", TTLCache[dict])
TENANT_CACHE = web.AppKey("tenant_cache", TTLCache[Tenant])  # tenant settings (rate limits), briefly cached
CATEGORY_CACHE = web.AppKey("category_cache", TTLCache[str])  # template id → category, for lane choice

TENANT_ID = web.RequestKey("tenant_id", str)  # request-scoped: set by the auth middleware
