"""CEL budgets through the real stack (broker, Valkey, SMTP peer, routers, campaigns service): one
tenant's quadratic trigger condition over a big event is a ``condition_error`` and does not hold back
another tenant's transactional email; hidden macro nesting is refused at POST /v1/campaigns; stored
triggers and segments are checked again under today's bounds; a segment over budget for a contact
skips that contact with a reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from herald_common.campaigns.model import CampaignIn
from herald_common.campaigns.store import CampaignStore
from herald_common.events import TriggerIn
from herald_common.redisio import Keys, redis_from_url
from herald_common.triggerstore import TriggerStore
from tests.conftest import Infra
from tests.harness import ADMIN_TOKEN, eventually
from tests.integration.campaign_support import campaign_stack, new_campaign, received, wait_state
from tests.integration.stack import Stack, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

QUADRATIC = "event.data.l.exists(a, (a+1000000) in event.data.l)"  # the reproduction
HIDDEN = "event.data.l.exists(a, event.data.l.exists // hides the macro\n (b, b == a))"


def _hidden_segment(depth: int) -> str:
    """Comprehensions nested ``depth`` deep, all but the outermost hidden from a regex by a comment."""
    names = "abcdefghijklmnop"[:depth]
    source = f"{names[-1]} > 0"
    for name in reversed(names[1:]):
        source = f"contact.attributes.l.exists //\n({name}, {source})"
    return f"contact.attributes.l.exists({names[0]}, {source})"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with campaign_stack(infra, tmp_path_factory.mktemp("celbudget")) as s:
        yield s


async def _tenant(stack: Stack, name: str) -> tuple[str, str]:
    """A new tenant: (its API key, its id)."""
    status, tenant = await stack.api.call("POST", "/admin/v1/tenants", {"name": name}, token=ADMIN_TOKEN)
    assert status == 201, tenant
    status, key = await stack.api.call(
        "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", {"name": "t"}, token=ADMIN_TOKEN
    )
    assert status == 201, key
    return str(key["api_key"]), str(tenant["id"])


async def _decisions(stack: Stack, event_id: str, token: str) -> list[dict[str, Any]]:
    doc: dict[str, Any] = {}

    async def processed() -> bool:
        nonlocal doc
        status, doc = await stack.api.call("GET", f"/v1/events/{event_id}", token=token)
        return status == 200 and doc["status"] == "processed"

    await eventually(processed, timeout_s=30)
    return list(doc["decisions"])


def _event(contact_id: str, **data: Any) -> dict[str, Any]:
    return {
        "type": "points.earned",
        "contact_id": contact_id,
        "data": data,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


async def test_a_quadratic_condition_is_a_condition_error_and_another_tenants_email_is_not_held(
    stack: Stack,
) -> None:
    heavy, _ = await _tenant(stack, "Heavy")
    light, _ = await _tenant(stack, "Light")
    template = {"category": "transactional", "email": {"subject": "Points", "text": "{{ data.n }}"}}
    for token in (heavy, light):
        assert (await stack.api.call("PUT", "/v1/templates/points", template, token=token))[0] == 200
    assert (await stack.api.call("PUT", "/v1/contacts/m-b", {"email": "b@heavy.test"}, token=heavy))[0] == 200
    rules = {"rules": [{"template_id": "points", "condition": QUADRATIC}]}
    status, body = await stack.api.call("PUT", "/v1/triggers/points.earned", rules, token=heavy)
    assert status == 200, body  # linear-in-the-text, so it is saved; its cost shows at evaluation

    big = _event("m-b", l=list(range(6000)), n=1)  # the 35 KB event: ~2.5 s of CPU unbudgeted
    mail = {"to": {"email": "a@light.test"}, "template_id": "points", "data": {"n": 7}}
    posted = await asyncio.gather(
        *[stack.api.call("POST", "/v1/events", big, token=heavy) for _ in range(3)],
        stack.api.call("POST", "/v1/notifications", mail, token=light),
    )
    assert all(status == 202 for status, _ in posted), posted
    started = time.monotonic()
    *events, (_, notification) = posted
    await wait_status(stack, notification["id"], "sent", light)
    assert time.monotonic() - started < 10  # 0.2 s measured; unbudgeted, the three events held it 10.3 s
    assert received(stack, "a") == {"a": 1}
    for _, event in events:
        (decision,) = await _decisions(stack, event["id"], heavy)
        assert decision["reason"] == "condition_error", decision
        assert "budget" in decision["error"], decision
    small = await stack.api.call("POST", "/v1/events", _event("m-b", l=[1, 2, 3], n=2), token=heavy)
    (decision,) = await _decisions(stack, small[1]["id"], heavy)
    assert decision["reason"] == "condition_false"  # the same condition over a small event runs
    assert not received(stack, "b")


async def test_a_stored_trigger_that_todays_bounds_refuse_is_never_run(stack: Stack) -> None:
    token, tenant_id = await _tenant(stack, "Legacy")
    assert (await stack.api.call("PUT", "/v1/contacts/m-l", {"email": "l@legacy.test"}, token=token))[
        0
    ] == 200
    template = {"category": "transactional", "email": {"subject": "s", "text": "t"}}
    assert (await stack.api.call("PUT", "/v1/templates/points", template, token=token))[0] == 200
    rule = {"template_id": "points", "condition": HIDDEN}
    status, body = await stack.api.call("PUT", "/v1/triggers/points.earned", {"rules": [rule]}, token=token)
    assert status == 422 and "nest 2 deep" in body["errors"][0]["message"], body
    redis = redis_from_url(stack.env.redis_url)
    try:  # saved before these bounds existed
        await TriggerStore(redis, Keys(stack.env.prefix)).put(
            tenant_id, "points.earned", TriggerIn.model_validate({"rules": [rule]})
        )
    finally:
        await redis.aclose()
    status, event = await stack.api.call("POST", "/v1/events", _event("m-l", l=[1, 2]), token=token)
    assert status == 202, event
    (decision,) = await _decisions(stack, event["id"], token)
    assert decision["reason"] == "condition_error" and "nest 2 deep" in decision["error"], decision


async def test_hidden_nested_segments_are_refused_at_create_and_at_start(stack: Stack) -> None:
    token, tenant_id = await _tenant(stack, "Segments")
    stack.api.token = token
    template = {"category": "marketing", "email": {"subject": "s", "text": "t"}}
    assert (await stack.api.call("PUT", "/v1/templates/promo", template))[0] == 200
    deep = _hidden_segment(8)  # about 10^16 steps per contact unbudgeted
    status, body = await stack.api.call("POST", "/v1/campaigns", {"template_id": "promo", "segment": deep})
    assert status == 422, body
    assert body["errors"][0]["field"] == "segment" and "nest 8 deep" in body["errors"][0]["message"]

    redis = redis_from_url(stack.env.redis_url)
    try:  # a draft saved before these bounds existed cannot start
        snap = await CampaignStore(redis, Keys(stack.env.prefix)).create(
            tenant_id, CampaignIn.model_validate({"template_id": "promo", "segment": deep})
        )
    finally:
        await redis.aclose()
    status, body = await stack.api.call("POST", f"/v1/campaigns/{snap.campaign.id}:start")
    assert status == 409, body
    assert body["errors"][0]["field"] == "segment" and "nest 8 deep" in body["errors"][0]["message"]
    status, body = await stack.api.call("GET", f"/v1/campaigns/{snap.campaign.id}")
    assert status == 200 and body["state"] == "draft"


async def test_a_segment_over_budget_for_a_contact_skips_that_contact_with_a_reason(stack: Stack) -> None:
    stack.api.token, _ = await _tenant(stack, "Budgeted")
    contacts = {"sk-small": list(range(3)), "sk-big": list(range(6000))}
    for cid, values in contacts.items():
        body = {"email": f"{cid}@example.com", "attributes": {"first_name": cid, "l": values}}
        assert (await stack.api.call("PUT", f"/v1/contacts/{cid}", body))[0] == 200
    segment = "contact.attributes.l.exists(a, (a + 1) in contact.attributes.l)"
    campaign_id = await new_campaign(stack, segment=segment, rate_per_s=100)
    status, body = await stack.api.call("POST", f"/v1/campaigns/{campaign_id}:start")
    assert status == 202, body
    doc = await wait_state(stack, campaign_id, "completed")
    assert doc["counts"]["sent"] == 1 and doc["counts"]["skipped"] == 1, doc
    assert doc["reasons"] == {"skipped:segment_over_budget": 1} and doc["audience"] == 2, doc
    status, page = await stack.api.call("GET", f"/v1/campaigns/{campaign_id}/recipients?status=skipped")
    assert status == 200
    assert page["recipients"] == [
        {"contact_id": "sk-big", "status": "skipped", "reason": "segment_over_budget"}
    ]
    assert received(stack, "sk-") == {"sk-small": 1}
