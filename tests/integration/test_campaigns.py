"""Campaigns end to end: the API, the campaigns service fanning out through the real broker and Redis to
a real SMTP server, the per-recipient record, pause and cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import Infra
from tests.harness import eventually
from tests.integration.campaign_support import (
    campaign,
    campaign_stack,
    members,
    new_campaign,
    received,
    upload,
    wait_state,
)
from tests.integration.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with campaign_stack(infra, tmp_path_factory.mktemp("campaigns")) as s:
        yield s


async def _tenant(stack: Stack) -> None:
    stack.api.token = await stack.api.new_tenant()


async def test_segment_selects_exactly_the_matching_contacts_each_greeted_once(stack: Stack) -> None:
    await _tenant(stack)
    gold = await members(stack, 40, prefix="g", tier="gold", cinema="Embassy")
    await members(stack, 30, prefix="s", tier="silver", cinema="Embassy")
    await members(stack, 20, prefix="p", tier="platinum", cinema="Odeon")
    segment = 'contact.attributes.tier in ["gold", "platinum"] && contact.attributes.cinema == "Embassy"'
    cid = await new_campaign(stack, segment=segment, rate_per_s=2000)
    status, body = await stack.api.call("POST", f"/v1/campaigns/{cid}:start")
    assert status == 202, body
    doc = await wait_state(stack, cid, "completed")
    assert doc["audience"] == 40 and doc["counts"]["sent"] == 40 and doc["fanned_out"] == 40
    got = received(stack, "")
    assert set(got) == set(gold) and set(got.values()) == {1}
    mail = next(m for m in stack.smtp.snapshot() if m.rcpt_to == ["g00003@example.com"])
    assert mail.subject == "Hello Ng00003" and "you have 30 points" in (mail.text or "")
    status, page = await stack.api.call("GET", f"/v1/campaigns/{cid}/recipients?status=sent&limit=25")
    assert status == 200 and len(page["recipients"]) == 25 and page["next_cursor"] == gold[24]
    _, rest = await stack.api.call("GET", f"/v1/campaigns/{cid}/recipients?status=sent&cursor={gold[24]}")
    assert [r["contact_id"] for r in page["recipients"] + rest["recipients"]] == gold


async def test_pause_stops_provider_calls_within_a_second_and_resume_sends_the_rest_once(
    stack: Stack,
) -> None:
    await _tenant(stack)
    ids = await members(stack, 60, prefix="q")
    cid = await new_campaign(stack, rate_per_s=20)
    await upload(stack, cid, ids)
    await stack.api.call("POST", f"/v1/campaigns/{cid}:start")
    await eventually(lambda: sum(received(stack, "q").values()) >= 15, timeout_s=15, interval_s=0.02)
    status, body = await stack.api.call("POST", f"/v1/campaigns/{cid}:pause")
    assert status == 202 and body["state"] == "paused"
    paused_at = time.monotonic()
    await asyncio.sleep(1.0)
    after_one_second = sum(received(stack, "q").values())
    await asyncio.sleep(2.5)  # long enough for any parked delivery to have come back and been asked again
    assert sum(received(stack, "q").values()) == after_one_second, "a provider call after pause + 1 s"
    assert after_one_second < 60 and time.monotonic() - paused_at >= 3.5
    status, body = await stack.api.call("POST", f"/v1/campaigns/{cid}:resume")
    assert status == 202 and body["state"] == "running"
    doc = await wait_state(stack, cid, "completed")
    assert doc["counts"]["sent"] == 60
    got = received(stack, "q")
    assert sorted(got) == ids and set(got.values()) == {1}


async def test_cancel_mid_run_leaves_the_rest_cancelled(stack: Stack) -> None:
    await _tenant(stack)
    ids = await members(stack, 60, prefix="x")
    cid = await new_campaign(stack, rate_per_s=20)
    await upload(stack, cid, ids)
    await stack.api.call("POST", f"/v1/campaigns/{cid}:start")
    await eventually(lambda: sum(received(stack, "x").values()) >= 10, timeout_s=15, interval_s=0.02)
    status, body = await stack.api.call("POST", f"/v1/campaigns/{cid}:cancel")
    assert status == 202 and body["state"] == "cancelled"
    doc = await wait_state(stack, cid, "cancelled")
    counts = doc["counts"]
    sent = set(received(stack, "x"))
    assert counts["sent"] == len(sent) and counts["cancelled"] == 60 - len(sent) and counts["cancelled"] > 0
    assert sum(counts.values()) == 60
    _, page = await stack.api.call("GET", f"/v1/campaigns/{cid}/recipients?status=cancelled&limit=1000")
    assert {r["contact_id"] for r in page["recipients"]} == set(ids) - sent
    await asyncio.sleep(0.5)
    assert set(received(stack, "x")) == sent  # nothing reached the provider after


async def test_lifecycle_rules_rate_change_and_resend_to_failed(stack: Stack) -> None:
    await _tenant(stack)
    status, body = await stack.api.call("POST", "/v1/campaigns", {"template_id": "nope"})
    assert status == 422
    await stack.api.call("PUT", "/v1/contacts/f1", {"email": "f1@bounce.test"})
    stack.smtp.reject["f1@bounce.test"] = "550 5.1.1 no such user"
    ids = [*await members(stack, 3, prefix="r"), "f1", "ghost"]
    bad = await stack.api.call(
        "POST",
        "/v1/campaigns",
        {"template_id": "nope", "segment": "contact.attributes.tier ==", "rate_per_s": 5},
    )
    assert bad[0] == 422
    await stack.api.call(
        "PUT", "/v1/templates/promo", {"category": "marketing", "email": {"subject": "s", "text": "t"}}
    )
    status, body = await stack.api.call(
        "POST", "/v1/campaigns", {"template_id": "promo", "segment": "contact.x =="}
    )
    assert status == 422 and "line 1, column" in body["errors"][0]["message"]
    cid = await new_campaign(stack, rate_per_s=50)
    assert (await stack.api.call("POST", f"/v1/campaigns/{cid}:start"))[0] == 409  # no audience yet
    assert (await stack.api.call("POST", f"/v1/campaigns/{cid}:pause"))[0] == 409
    await upload(stack, cid, ids)
    status, body = await stack.api.call("PATCH", f"/v1/campaigns/{cid}", {"rate_per_s": 500})
    assert status == 200 and body["rate_per_s"] == 500
    await stack.api.call("POST", f"/v1/campaigns/{cid}:start")
    data = b'{"contact_id": "late"}\n'
    status, _ = await stack.api.call(
        "POST", f"/v1/campaigns/{cid}/audience", data=data, headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 409
    doc = await wait_state(stack, cid, "completed")
    assert doc["counts"]["sent"] == 3 and doc["counts"]["failed"] == 1 and doc["counts"]["skipped"] == 1
    assert doc["reasons"] == {"skipped:unknown_contact": 1}
    _, failed = await stack.api.call("GET", f"/v1/campaigns/{cid}/recipients?status=failed")
    assert [r["contact_id"] for r in failed["recipients"]] == ["f1"]
    status, follow = await stack.api.call("POST", f"/v1/campaigns/{cid}:resend-failed")
    assert status == 201 and follow["audience"] == 1 and follow["follow_up_of"] == cid
    assert follow["state"] == "draft"
    status, listing = await stack.api.call("GET", "/v1/campaigns?limit=1")
    assert status == 200 and [c["id"] for c in listing["campaigns"]] == [follow["id"]]
    _, older = await stack.api.call("GET", f"/v1/campaigns?limit=1&cursor={listing['next_cursor']}")
    assert [c["id"] for c in older["campaigns"]] == [cid]
    assert (await campaign(stack, cid))["eta_s"] is None
