"""Unit tests of the intake library's pure parts and of the gateway's quota limiter cache."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from herald_common.cache import TTLCache
from herald_common.intake import fingerprint
from herald_common.redisio import Keys
from herald_common.schemas import NotificationIn, Tenant
from herald_common.settings import load
from herald_gateway import quota
from herald_gateway.context import KEYS, REDIS, SETTINGS, TENANT_CACHE
from herald_gateway.settings import GatewaySettings


def _n(raw: bytes) -> NotificationIn:
    return NotificationIn.model_validate_json(raw)


def test_fingerprint_is_over_canonical_json_not_bytes() -> None:
    a = _n(b'{"to":{"email":"a@example.com"},"template_id":"t","data":{"x":1,"y":[1,2]}}')
    b = _n(b'{ "data": {"y": [1, 2], "x": 1},\n "template_id": "t", "to": {"email": "a@example.com"} }')
    assert fingerprint(a) == fingerprint(b)
    keyed = _n(
        b'{"to":{"email":"a@example.com"},"template_id":"t","data":{"x":1,"y":[1,2]},"idempotency_key":"k"}'
    )
    assert fingerprint(keyed) == fingerprint(a)  # the key itself is not part of the request
    assert fingerprint(
        _n(b'{"to":{"email":"a@example.com"},"template_id":"t","data":{"x":2,"y":[1,2]}}')
    ) != (fingerprint(a))
    assert fingerprint(
        _n(b'{"to":{"email":"a@example.com"},"template_id":"t","data":{"x":1,"y":[2,1]}}')
    ) != (fingerprint(a))


class _Limiter:
    built = 0
    reserve = 0.0

    def __init__(self, *_: Any, **kw: Any) -> None:
        type(self).built += 1
        self.kw = kw

    async def acquire(self, n: int, lane: str) -> float:
        return 0.0


async def test_quota_builds_one_limiter_per_tenant_and_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quota, "RateLimiter", _Limiter)
    app = web.Application()
    app[REDIS] = object()  # type: ignore[assignment]
    app[KEYS] = Keys("q")
    app[TENANT_CACHE] = TTLCache(60)
    app[SETTINGS] = load(GatewaySettings, admin_token="a-long-enough-admin-token")
    quota.add_to(app)
    now = datetime.now(UTC)
    app[TENANT_CACHE].put("t1", Tenant(id="t1", name="a", created_at=now, rate_limit_per_s=5))
    for _ in range(10):
        await quota.take(app, "t1", 1, "transactional")
    assert _Limiter.built == 1 and list(app[quota.LIMITERS]) == [("t1", 5, 1000)]
    app[TENANT_CACHE].put("t1", Tenant(id="t1", name="a", created_at=now, rate_limit_per_s=9))
    await quota.take(app, "t1", 1, "bulk")
    assert _Limiter.built == 2 and list(app[quota.LIMITERS]) == [("t1", 9, 1000)]  # the old one dropped
