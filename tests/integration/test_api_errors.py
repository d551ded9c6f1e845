"""Every bad input gets a 4xx problem document, never a 5xx; nothing half-accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import Infra
from tests.harness import ADMIN_TOKEN
from tests.integration.stack import Stack, email_stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp_path_factory.mktemp("api"), senders=False) as s:
        s.api.token = await s.api.new_tenant()
        yield s


def _is_problem(status: int, body: object, expected: int) -> None:
    assert status == expected, body
    assert isinstance(body, dict) and body["status"] == expected and body["detail"], body


async def test_unauthenticated_and_bad_keys(stack: Stack) -> None:
    ok = {"to": {"email": "a@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}}
    _is_problem(*await stack.api.call("POST", "/v1/notifications", ok, token=""), 401)
    _is_problem(*await stack.api.call("POST", "/v1/notifications", ok, token="hk_nope_nope"), 401)
    _is_problem(
        *await stack.api.call("POST", "/admin/v1/tenants", {"name": "x"}, token="wrong-admin-token"), 401
    )
    _is_problem(*await stack.api.call("POST", "/admin/v1/tenants", {"name": "x"}), 401)  # tenant key ≠ admin


async def test_revoked_key_stops_working(stack: Stack) -> None:
    _, tenant = await stack.api.call("POST", "/admin/v1/tenants", {"name": "Rev"}, token=ADMIN_TOKEN)
    _, key = await stack.api.call("POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token=ADMIN_TOKEN)
    status, _ = await stack.api.call("GET", "/v1/contacts/none", token=key["api_key"])
    assert status == 404
    status, _ = await stack.api.call(
        "DELETE", f"/admin/v1/tenants/{tenant['id']}/api-keys/{key['key_id']}", token=ADMIN_TOKEN
    )
    assert status == 204
    _is_problem(*await stack.api.call("GET", "/v1/contacts/none", token=key["api_key"]), 401)


async def test_malformed_and_wrongly_typed_bodies(stack: Stack) -> None:
    headers = {"Content-Type": "application/json"}
    _is_problem(*await stack.api.call("POST", "/v1/notifications", data=b"{not json", headers=headers), 400)
    _is_problem(*await stack.api.call("POST", "/v1/notifications", data=b"", headers=headers), 400)
    _is_problem(*await stack.api.call("POST", "/v1/notifications", data=b"[1,2]", headers=headers), 422)
    _is_problem(
        *await stack.api.call(
            "POST",
            "/v1/notifications",
            data=b"x=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
    )
    status, body = await stack.api.call(
        "POST",
        "/v1/notifications",
        {
            "to": {"email": "not-an-address", "phone": "12"},
            "template_id": "a",
            "content": {"email": {}},
            "channels": ["fax"],
            "surprise": 1,
        },
    )
    _is_problem(status, body, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"to.email", "to.phone", "channels.0", "surprise"} <= fields, fields


async def test_oversized_body(stack: Stack) -> None:
    big = b'{"to": {"email": "a@example.com"}, "data": {"x": "' + b"a" * (6 * 1024 * 1024) + b'"}}'
    status, body = await stack.api.call(
        "POST", "/v1/notifications", data=big, headers={"Content-Type": "application/json"}
    )
    _is_problem(status, body, 413)
    items = [{"to": {"email": "a@example.com"}, "content": {"sms": {"text": "x"}}}] * 1001
    _is_problem(*await stack.api.call("POST", "/v1/notifications:batch", {"notifications": items}), 422)


async def test_hostile_templates_are_sandboxed(stack: Stack) -> None:
    status, body = await stack.api.call(
        "PUT", "/v1/templates/bad", {"email": {"subject": "{% if %}", "text": "x"}}
    )
    _is_problem(status, body, 422)
    assert body["errors"][0]["field"] == "email.subject"
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    status, _ = await stack.api.call("PUT", "/v1/templates/evil", {"email": {"subject": "x", "text": evil}})
    assert status == 200
    status, body = await stack.api.call("POST", "/v1/templates/evil:preview", {"data": {}})
    _is_problem(status, body, 422)
    status, body = await stack.api.call("POST", "/v1/templates/missing:preview", {"data": {}})
    _is_problem(status, body, 404)


async def test_unknown_routes_methods_and_ids(stack: Stack) -> None:
    _is_problem(*await stack.api.call("GET", "/v1/nothing-here"), 404)
    _is_problem(*await stack.api.call("PATCH", "/v1/notifications"), 405)
    _is_problem(*await stack.api.call("GET", "/v1/notifications/n_doesnotexist"), 404)
    _is_problem(*await stack.api.call("GET", "/v1/contacts/%2e%2e"), 404)
    _is_problem(*await stack.api.call("PUT", "/v1/contacts/c1", {"phone": "+1555"}), 422)
    _is_problem(*await stack.api.call("PUT", "/v1/contacts/c1", {"timezone": "Mars/Olympus"}), 422)


async def test_openapi_document(stack: Stack) -> None:
    status, doc = await stack.api.call("GET", "/v1/openapi.json", token="")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert "/v1/notifications" in doc["paths"] and "NotificationIn" in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():  # every referenced schema is defined
        for op in ops.values():
            for kind, media in op.get("requestBody", {}).get("content", {}).items():
                if kind == "application/json":
                    name = media["schema"]["$ref"].rsplit("/", 1)[1]
                    assert name in doc["components"]["schemas"], (path, name)
                else:  # NDJSON and CSV streams, read line by line
                    assert kind in ("application/x-ndjson", "text/csv"), (path, kind)
                    if ref := media["schema"].get("items", {}).get("$ref"):
                        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], (path, ref)


async def test_contacts_templates_roundtrip(stack: Stack) -> None:
    status, c = await stack.api.call(
        "PUT",
        "/v1/contacts/rt",
        {
            "email": "RT@Example.com",
            "phone": "+447911123456",
            "timezone": "Europe/London",
            "push_tokens": [{"token": "tok-12345678", "platform": "android"}],
        },
    )
    assert status == 200 and c["phone"] == "+447911123456"
    status, got = await stack.api.call("GET", "/v1/contacts/rt")
    assert status == 200 and got["email"] == c["email"]
    assert (await stack.api.call("DELETE", "/v1/contacts/rt"))[0] == 204
    assert (await stack.api.call("GET", "/v1/contacts/rt"))[0] == 404
    status, body = await stack.api.call(
        "POST",
        "/v1/contacts:batch",
        {"contacts": [{"id": f"b{i}", "email": f"b{i}@example.com"} for i in range(50)]},
    )
    assert status == 200 and body["upserted"] == 50
    status, t = await stack.api.call(
        "PUT", "/v1/templates/t1", {"email": {"subject": "Hi {{ contact.name }}", "text": "x"}}
    )
    assert status == 200 and t["version"] == 1
    status, t = await stack.api.call("PUT", "/v1/templates/t1", {"email": {"subject": "Hey", "text": "x"}})
    assert t["version"] == 2
    status, p = await stack.api.call(
        "POST", "/v1/templates/t1:preview", {"contact": {"email": "a@example.com"}}
    )
    assert status == 200 and p["channels"]["email"]["subject"] == "Hey"


async def test_tenant_rate_limit_answers_429_with_retry_after(stack: Stack) -> None:
    _, tenant = await stack.api.call("POST", "/admin/v1/tenants", {"name": "Limited"}, token=ADMIN_TOKEN)
    _, key = await stack.api.call("POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token=ADMIN_TOKEN)
    status, patched = await stack.api.call(
        "PATCH",
        f"/admin/v1/tenants/{tenant['id']}",
        {"rate_limit_per_s": 1, "rate_limit_burst": 5},
        token=ADMIN_TOKEN,
    )
    assert status == 200 and patched["rate_limit_per_s"] == 1 and patched["name"] == "Limited"
    one = {"to": {"email": "q@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}}
    statuses = [
        (await stack.api.call("POST", "/v1/notifications", one, token=key["api_key"]))[0] for _ in range(5)
    ]
    assert statuses == [202] * 5
    async with stack.api.http.post(
        f"{stack.base_url}/v1/notifications", json=one, headers={"Authorization": f"Bearer {key['api_key']}"}
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1 and body["status"] == 429
    batch = {"notifications": [one] * 10}
    status, body = await stack.api.call("POST", "/v1/notifications:batch", batch, token=key["api_key"])
    assert status == 429 and "burst" in body["detail"]
    # Another tenant is not affected.
    status, _ = await stack.api.call("POST", "/v1/notifications", one)
    assert status == 202
