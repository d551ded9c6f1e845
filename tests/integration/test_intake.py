"""Intake through the gateway: one idempotency scheme for single requests and batch items (reserved
atomically, fingerprinted over canonical JSON, one namespace), and ids that outlive the admin token."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiokafka.errors import KafkaConnectionError

from herald_common.cache import TTLCache
from herald_common.ids import NotificationIds
from herald_common.intake import IdempotencyMismatch, Intake, QueueUnavailable, Submission, fingerprint
from herald_common.kafka import make_producer
from herald_common.redisio import Keys, redis_from_url
from herald_common.schemas import NotificationIn
from herald_common.settings import CommonSettings, load
from herald_common.store import Store
from herald_common.topics import Topics
from herald_dev.infra import free_port
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, read_topic, running

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@contextlib.asynccontextmanager
async def gateway(env: Env, admin_token: str = ADMIN_TOKEN) -> AsyncIterator[Api]:
    port = free_port()
    settings = load(
        GatewaySettings, **env.settings(http_port=port, admin_token=admin_token, drain_timeout_s=1.0)
    )
    async with running((serve_gateway, settings)), aiohttp.ClientSession() as http:
        yield Api(http, f"http://127.0.0.1:{port}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(infra: Infra) -> Env:
    env = Env(infra.bootstrap, infra.redis_url, unique("intake"))
    await env.create_topics(partitions=4)
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(env: Env) -> AsyncIterator[Api]:
    async with gateway(env) as api:
        yield api


def _item(email: str, **extra: Any) -> dict[str, Any]:
    return {"to": {"email": email}, "content": {"email": {"subject": "s", "text": "t"}}, **extra}


async def _records_to(env: Env, email: str) -> list[dict[str, Any]]:
    records = await read_topic(env.bootstrap, Topics(env.prefix).requests("transactional"))
    return [r for r in (orjson.loads(rec.value) for rec in records) if r["to"].get("email") == email]


async def test_concurrent_batches_with_one_key_produce_one_notification(env: Env, api: Api) -> None:
    api.token = await api.new_tenant()
    batch = {"notifications": [_item("race@example.com", idempotency_key="race")]}
    answers = await asyncio.gather(*(api.call("POST", "/v1/notifications:batch", batch) for _ in range(20)))
    assert {status for status, _ in answers} <= {202, 409}, answers
    ids = {body["notifications"][0]["id"] for status, body in answers if status == 202}
    assert len(ids) == 1, ids
    for status, body in answers:
        if status == 409:
            assert body["errors"][0]["field"] == "notifications[0].idempotency_key", body
    assert [r["id"] for r in await _records_to(env, "race@example.com")] == list(ids)


async def test_batch_key_with_another_body_is_422_and_nothing_is_produced(env: Env, api: Api) -> None:
    api.token = await api.new_tenant()
    first = _item("first@example.com", idempotency_key="k1")
    status, body = await api.call("POST", "/v1/notifications:batch", {"notifications": [first]})
    assert status == 202, body
    first_id = body["notifications"][0]["id"]
    fresh = _item("fresh@example.com", idempotency_key="k2")
    changed = _item("first@example.com", idempotency_key="k1", data={"seat": "B7"})
    status, body = await api.call("POST", "/v1/notifications:batch", {"notifications": [fresh, changed]})
    assert status == 422, body
    assert body["errors"] == [
        {"field": "notifications[1].idempotency_key", "message": body["errors"][0]["message"]}
    ]
    # k2's reservation was released: the same item is accepted afresh, not 409 and not a replay.
    status, body = await api.call("POST", "/v1/notifications:batch", {"notifications": [fresh, first]})
    assert status == 202, body
    assert "replayed" not in body["notifications"][0]
    assert body["notifications"][1] == {
        "id": first_id,
        "status": "accepted",
        "lane": "transactional",
        "replayed": True,
    }
    assert len(await _records_to(env, "fresh@example.com")) == 1
    assert len(await _records_to(env, "first@example.com")) == 1


async def test_batch_key_in_flight_is_409_for_the_whole_batch(env: Env, api: Api) -> None:
    _, tenant = await api.call("POST", "/admin/v1/tenants", {"name": "Busy"}, token=ADMIN_TOKEN)
    _, key = await api.call("POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token=ADMIN_TOKEN)
    api.token = key["api_key"]
    busy = _item("busy@example.com", idempotency_key="busy")
    marker = {"state": "inflight", "fp": fingerprint(NotificationIn.model_validate(busy)), "token": "x"}
    redis = redis_from_url(env.redis_url)
    keys = Keys(env.prefix)
    try:
        await redis.set(keys.idempotency(tenant["id"], "busy"), orjson.dumps(marker), ex=60)
        other = _item("other@example.com", idempotency_key="other")
        status, body = await api.call("POST", "/v1/notifications:batch", {"notifications": [other, busy]})
        assert status == 409, body
        assert [e["field"] for e in body["errors"]] == ["notifications[1].idempotency_key"]
        status, body = await api.call("POST", "/v1/notifications", busy, headers={"Idempotency-Key": "busy"})
        assert status == 409, body
        assert not await _records_to(env, "other@example.com")
        assert await redis.get(keys.idempotency(tenant["id"], "other")) is None
    finally:
        await redis.aclose()


async def test_single_and_batch_share_one_key_namespace(api: Api) -> None:
    api.token = await api.new_tenant()
    one = _item("shared@example.com")
    status, single = await api.call("POST", "/v1/notifications", one, headers={"Idempotency-Key": "s1"})
    assert status == 202, single
    status, body = await api.call(
        "POST", "/v1/notifications:batch", {"notifications": [{**one, "idempotency_key": "s1"}]}
    )
    assert status == 202 and body["notifications"][0]["id"] == single["id"], body
    assert body["notifications"][0]["replayed"] is True
    other = {**one, "data": {"x": 1}, "idempotency_key": "s1"}
    status, body = await api.call("POST", "/v1/notifications:batch", {"notifications": [other]})
    assert status == 422, body
    # and the other way round: a batch item's key, then a single POST
    status, body = await api.call(
        "POST", "/v1/notifications:batch", {"notifications": [{**one, "idempotency_key": "b1"}]}
    )
    assert status == 202, body
    status, again = await api.call("POST", "/v1/notifications", one, headers={"Idempotency-Key": "b1"})
    assert status == 202 and again["id"] == body["notifications"][0]["id"], again
    status, problem = await api.call("POST", "/v1/notifications", other, headers={"Idempotency-Key": "b1"})
    assert status == 422, problem


async def test_same_json_reserialised_is_a_replay(api: Api) -> None:
    api.token = await api.new_tenant()
    headers = {"Content-Type": "application/json", "Idempotency-Key": "json"}
    a = b'{"to":{"email":"json@example.com"},"content":{"email":{"subject":"s","text":"t"}},"data":{"a":1}}'
    b = (
        b'{ "data": {"a": 1},\n  "content": {"email": {"text": "t", "subject": "s"}},'
        b'  "to": {"email": "json@example.com"} }'
    )
    status, first = await api.call("POST", "/v1/notifications", data=a, headers=headers)
    assert status == 202, first
    async with api.http.post(
        api.base + "/v1/notifications", data=b, headers={**headers, "Authorization": f"Bearer {api.token}"}
    ) as resp:
        again = await resp.json(content_type=None)
        assert resp.status == 202, again
        assert again["id"] == first["id"] and resp.headers["Idempotent-Replayed"] == "true"


async def test_ids_outlive_an_admin_token_rotation(env: Env) -> None:
    other_env = Env(env.bootstrap, env.redis_url, env.prefix)
    async with gateway(other_env, admin_token="first-admin-token-0123") as api:
        _, tenant = await api.call(
            "POST", "/admin/v1/tenants", {"name": "Rot"}, token="first-admin-token-0123"
        )
        _, key = await api.call(
            "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token="first-admin-token-0123"
        )
        api.token = key["api_key"]
        status, body = await api.call("POST", "/v1/notifications", _item("rot@example.com"))
        assert status == 202, body
    async with gateway(other_env, admin_token="rotated-admin-token-4567") as api:
        api.token = key["api_key"]
        status, doc = await api.call("GET", f"/v1/notifications/{body['id']}")
        assert status == 200 and doc["status"] == "accepted", doc


async def test_a_key_repeated_within_one_batch_is_one_notification(env: Env, api: Api) -> None:
    api.token = await api.new_tenant()
    twice = _item("twice@example.com", idempotency_key="t")
    status, body = await api.call("POST", "/v1/notifications:batch", {"notifications": [twice, twice]})
    assert status == 202, body
    first, second = body["notifications"]
    assert second == {**first, "replayed": True}
    assert len(await _records_to(env, "twice@example.com")) == 1
    changed = {**twice, "data": {"x": 1}}
    other = _item("twice@example.com", idempotency_key="u")
    status, body = await api.call(
        "POST", "/v1/notifications:batch", {"notifications": [other, changed, twice]}
    )
    assert status == 422, body
    assert [e["field"] for e in body["errors"]] == ["notifications[1].idempotency_key"]


async def test_the_transactional_lane_is_for_transactional_categories(api: Api) -> None:
    _, tenant = await api.call(
        "POST",
        "/admin/v1/tenants",
        {"name": "Lanes", "transactional_categories": ["booking"]},
        token=ADMIN_TOKEN,
    )
    _, key = await api.call("POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token=ADMIN_TOKEN)
    api.token = key["api_key"]
    lanes = {}
    for category in ("transactional", "booking", "marketing", "newsletter"):
        status, body = await api.call("POST", "/v1/notifications", _item("l@example.com", category=category))
        assert status == 202, body
        lanes[category] = body["lane"]
    assert lanes == {
        "transactional": "transactional",
        "booking": "transactional",  # the tenant's own transactional category
        "marketing": "bulk",
        "newsletter": "bulk",
    }
    status, body = await api.call(
        "POST", "/v1/notifications", _item("l@example.com", category="marketing", lane="transactional")
    )
    assert status == 422 and body["errors"][0]["field"] == "lane", body
    status, body = await api.call(
        "POST",
        "/v1/notifications:batch",
        {
            "notifications": [
                _item("a@example.com"),
                _item("b@example.com", category="news", lane="transactional"),
            ]
        },
    )
    assert status == 422 and body["errors"][0]["field"] == "notifications[1].lane", body


async def test_a_tenant_without_a_limit_gets_the_default_one(env: Env) -> None:
    port = free_port()
    settings = load(
        GatewaySettings,
        **env.settings(
            http_port=port,
            admin_token=ADMIN_TOKEN,
            drain_timeout_s=1.0,
            tenant_default_rate_per_s=1.0,
            tenant_default_burst=3,
        ),
    )
    async with running((serve_gateway, settings)), aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{port}")
        api.token = await api.new_tenant("Unlimited?")
        statuses = [
            (await api.call("POST", "/v1/notifications", _item("q@example.com")))[0] for _ in range(5)
        ]
    assert statuses[:3] == [202, 202, 202] and statuses[3:] == [429, 429]


async def test_deleting_a_contact_erases_it_from_suppressions_and_caps(env: Env, api: Api) -> None:
    caps = {"marketing": [{"max": 2, "per": "P1D"}]}
    _, tenant = await api.call(
        "POST", "/admin/v1/tenants", {"name": "Erase", "frequency_caps": caps}, token=ADMIN_TOKEN
    )
    _, key = await api.call("POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token=ADMIN_TOKEN)
    api.token = key["api_key"]
    contact = {"email": "gone@example.com", "phone": "+447911123456"}
    assert (await api.call("PUT", "/v1/contacts/m-gone", contact))[0] == 200
    keys, redis = Keys(env.prefix), redis_from_url(env.redis_url)
    try:
        suppressed = keys.suppressions(tenant["id"])
        await redis.sadd(suppressed, "gone@example.com", "+447911123456", "kept@example.com")
        await redis.zadd(keys.frequency(tenant["id"], "m-gone", "marketing"), {"n_1": 1.0})
        assert (await api.call("DELETE", "/v1/contacts/m-gone"))[0] == 204
        assert await redis.smembers(suppressed) == {b"kept@example.com"}
        assert not await redis.exists(keys.frequency(tenant["id"], "m-gone", "marketing"))
        assert (await api.call("GET", "/v1/contacts/m-gone"))[0] == 404
        assert (await api.call("DELETE", "/v1/contacts/m-gone"))[0] == 404
    finally:
        await redis.aclose()


class _AckLostOnce:
    """A real producer whose first write reaches the broker but whose acknowledgement is lost (the
    connection cut after the broker took it): what a client sees as a 503 it should retry."""

    def __init__(self, producer: Any) -> None:
        self.producer, self.lost = producer, False

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        await self.producer.send_and_wait(topic, value, key=key)
        if not self.lost:
            self.lost = True
            raise KafkaConnectionError("connection closed before the acknowledgement")


async def test_a_retry_after_a_lost_acknowledgement_is_written_under_the_same_id(env: Env) -> None:
    settings = load(CommonSettings, **env.settings())
    redis = redis_from_url(env.redis_url)
    producer = make_producer(settings)
    await producer.start()
    try:
        keys, store = Keys(env.prefix), Store(redis, Keys(env.prefix))
        intake = Intake(
            producer=_AckLostOnce(producer),  # type: ignore[arg-type]
            redis=redis,
            keys=keys,
            topics=Topics(env.prefix),
            store=store,
            category_cache=TTLCache(1.0),
            ids=NotificationIds(b"k" * 32),
            idempotency_ttl_s=60,
        )
        tenant = unique("t")
        email = f"{unique('lost')}@example.com"
        request = NotificationIn.model_validate(_item(email))
        with pytest.raises(QueueUnavailable):
            await intake.publish(tenant, Submission(request, "order-1"))
        retried = await intake.publish(tenant, Submission(request, "order-1"))
        assert not retried.replayed
        # Both writes carry the one id: the deliveries they lead to are the same, sent once.
        assert [r["id"] for r in await _records_to(env, email)] == [retried.id, retried.id]
        replay = await intake.publish(tenant, Submission(request, "order-1"))
        assert replay.replayed and replay.id == retried.id
        other = NotificationIn.model_validate(_item(email, data={"n": 2}))
        with pytest.raises(IdempotencyMismatch):
            await intake.publish(tenant, Submission(other, "order-1"))
    finally:
        await producer.stop()
        await redis.aclose()
