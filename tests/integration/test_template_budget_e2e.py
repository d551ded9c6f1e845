"""Budgeted templates through the real stack: over-budget templates are 422 problems at PUT and
``:preview``, a failed channel with a reason at send, and never delay another tenant's messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import Infra
from tests.integration.stack import Stack, email_stack
from tests.integration.stack import wait_status as _status

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

NESTED = "{% for i in data['items'] %}{% for j in data['items'] %}{% endfor %}{% endfor %}done"
ITEMS = list(range(3000))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp_path_factory.mktemp("budget")) as s:
        yield s


async def test_over_budget_templates_are_422_problems(stack: Stack) -> None:
    stack.api.token = await stack.api.new_tenant("Odeon")
    dense = {"email": {"subject": "s", "html": "{{ a }}" * 20_000}}
    status, body = await stack.api.call("PUT", "/v1/templates/dense", dense)
    assert status == 422, body
    assert body["errors"][0]["field"] == "email.html" and "too complex" in body["errors"][0]["message"]

    status, body = await stack.api.call("PUT", "/v1/templates/nested", {"sms": {"text": NESTED}})
    assert status == 200, body  # it compiles; its cost shows when it renders
    started = time.monotonic()
    status, body = await stack.api.call("POST", "/v1/templates/nested:preview", {"data": {"items": ITEMS}})
    assert status == 422, body
    assert body["errors"][0]["field"] == "sms.text" and "budget" in body["errors"][0]["message"]
    assert time.monotonic() - started < 5  # unbudgeted it took ~0.8 s of CPU on the gateway's loop

    # over budget whatever the data: refused at PUT by a trial render with an empty context
    big = {"email": {"subject": "s", "text": "ok"}, "locales": {"fr": {"sms": {"text": "{{ 'a' * 10**8 }}"}}}}
    status, body = await stack.api.call("PUT", "/v1/templates/big", big)
    assert status == 422 and body["errors"][0]["field"] == "locales.fr.sms.text", body
    assert "would exceed" in body["errors"][0]["message"]
    assert (await stack.api.call("GET", "/v1/templates/big"))[0] == 404


async def test_preview_uses_the_send_context_with_the_tenant_name(stack: Stack) -> None:
    stack.api.token = await stack.api.new_tenant("Rex Cinema")
    template = {"sms": {"text": "{{ tenant.name }}: hi {{ contact.first_name }} {{ lipsum }}{{ range }}"}}
    assert (await stack.api.call("PUT", "/v1/templates/hello", template))[0] == 200
    status, body = await stack.api.call(
        "POST", "/v1/templates/hello:preview", {"contact": {"attributes": {"first_name": "Ada"}}}
    )
    assert status == 200, body
    assert body["channels"]["sms"]["text"] == "Rex Cinema: hi Ada "


async def test_over_budget_send_fails_its_channel_and_another_tenant_is_unaffected(stack: Stack) -> None:
    bad = await stack.api.new_tenant("Heavy")
    good = await stack.api.new_tenant("Light")
    heavy = {
        "to": {"email": "heavy@example.com"},
        "content": {"email": {"subject": "s", "text": NESTED}},
        "data": {"items": ITEMS},
    }
    light = {"to": {"email": "light@example.com"}, "content": {"email": {"subject": "Hi", "text": "t"}}}
    results = await asyncio.gather(
        *[stack.api.call("POST", "/v1/notifications", heavy, token=bad) for _ in range(3)],
        stack.api.call("POST", "/v1/notifications", light, token=good),
    )
    assert all(status == 202 for status, _ in results), results
    *heavy_ids, light_id = [body["id"] for _, body in results]
    started = time.monotonic()
    await _status(stack, light_id, "sent", good)
    assert time.monotonic() - started < 10
    for nid in heavy_ids:
        doc = await _status(stack, nid, "failed", bad)
        reason = doc["channels"]["email"]["reason"]
        assert "render error in email.text" in reason and "budget" in reason, doc
    assert not [m for m in stack.smtp.snapshot() if m.rcpt_to == ["heavy@example.com"]]
