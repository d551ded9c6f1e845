"""One notification from the HTTP API to a real SMTP server, through the real broker and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import Infra
from tests.harness import eventually
from tests.integration.stack import Stack, email_stack
from tests.integration.stack import wait_status as _status

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TEMPLATE = {
    "category": "transactional",
    "email": {
        "subject": "Booking confirmed: {{ data.film }}",
        "html": "<p>Hi {{ contact.first_name }}, seat {{ data.seat }} for <b>{{ data.film }}</b>.</p>",
        "text": "Hi {{ contact.first_name }}, seat {{ data.seat }} for {{ data.film }}.",
    },
    "locales": {"fr": {"email": {"subject": "Réservation confirmée : {{ data.film }}", "text": "Bonjour !"}}},
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp_path_factory.mktemp("e2e")) as s:
        yield s


async def _tenant(stack: Stack) -> str:
    key = await stack.api.new_tenant()
    stack.api.token = key
    return key


async def test_template_notification_reaches_smtp_rendered(stack: Stack) -> None:
    await _tenant(stack)
    status, _ = await stack.api.call("PUT", "/v1/templates/booking", TEMPLATE)
    assert status == 200
    status, _ = await stack.api.call(
        "PUT",
        "/v1/contacts/m-1",
        {"email": "ada@example.com", "attributes": {"first_name": "Ada"}, "locale": "en-GB"},
    )
    assert status == 200
    status, body = await stack.api.call(
        "POST",
        "/v1/notifications",
        {"to": {"contact_id": "m-1"}, "template_id": "booking", "data": {"film": "Dune", "seat": "F7"}},
    )
    assert status == 202, body
    nid = body["id"]
    doc = await _status(stack, nid, "sent")
    assert doc["channels"]["email"]["provider"] == "smtp"
    assert doc["channels"]["email"]["attempts"] == 1
    mails = [m for m in stack.smtp.snapshot() if m.rcpt_to == ["ada@example.com"]]
    assert len(mails) == 1
    mail = mails[0]
    assert mail.subject == "Booking confirmed: Dune"
    assert "Hi Ada, seat F7 for Dune." in (mail.text or "")
    assert "<b>Dune</b>" in (mail.html or "")


async def test_locale_variant_and_html_escaping(stack: Stack) -> None:
    await _tenant(stack)
    await stack.api.call("PUT", "/v1/templates/booking", TEMPLATE)
    await stack.api.call("PUT", "/v1/contacts/m-fr", {"email": "zoe@example.fr", "locale": "fr-FR"})
    await stack.api.call(
        "PUT",
        "/v1/contacts/m-x",
        {"email": "x@example.com", "attributes": {"first_name": "<script>x</script>"}},
    )
    _, a = await stack.api.call(
        "POST",
        "/v1/notifications",
        {"to": {"contact_id": "m-fr"}, "template_id": "booking", "data": {"film": "Amélie"}},
    )
    _, b = await stack.api.call(
        "POST",
        "/v1/notifications",
        {"to": {"contact_id": "m-x"}, "template_id": "booking", "data": {"film": "X"}},
    )
    await _status(stack, a["id"], "sent")
    await _status(stack, b["id"], "sent")
    fr = next(m for m in stack.smtp.snapshot() if m.rcpt_to == ["zoe@example.fr"])
    assert fr.subject == "Réservation confirmée : Amélie"
    x = next(m for m in stack.smtp.snapshot() if m.rcpt_to == ["x@example.com"])
    assert "<script>" not in (x.html or "") and "&lt;script&gt;" in (x.html or "")


async def test_inline_content_to_inline_address(stack: Stack) -> None:
    await _tenant(stack)
    status, body = await stack.api.call(
        "POST",
        "/v1/notifications",
        {
            "to": {"email": "walk-in@example.org"},
            "content": {"email": {"subject": "Your code {{ data.code }}", "text": "Code: {{ data.code }}"}},
            "data": {"code": "482913"},
        },
    )
    assert status == 202, body
    await _status(stack, body["id"], "sent")
    mail = next(m for m in stack.smtp.snapshot() if m.rcpt_to == ["walk-in@example.org"])
    assert mail.subject == "Your code 482913"


async def test_unknown_contact_and_missing_template_are_visible_statuses(stack: Stack) -> None:
    await _tenant(stack)
    _, a = await stack.api.call(
        "POST", "/v1/notifications", {"to": {"contact_id": "ghost"}, "template_id": "booking"}
    )
    doc = await _status(stack, a["id"], "failed")
    assert "unknown contact" in doc["reason"]
    await stack.api.call("PUT", "/v1/contacts/m-2", {"email": "b@example.com"})
    _, b = await stack.api.call(
        "POST", "/v1/notifications", {"to": {"contact_id": "m-2"}, "template_id": "nope"}
    )
    doc = await _status(stack, b["id"], "failed")
    assert "template nope not found" in doc["reason"]
    # a contact without a phone asked for sms: that channel fails with a reason, email still goes
    await stack.api.call(
        "PUT", "/v1/templates/both", {"email": {"subject": "s", "text": "t"}, "sms": {"text": "t"}}
    )
    _, c = await stack.api.call(
        "POST", "/v1/notifications", {"to": {"contact_id": "m-2"}, "template_id": "both"}
    )
    doc = await _status(stack, c["id"], "partially_failed")  # the channels disagree
    assert doc["channels"]["email"]["status"] == "sent"
    assert doc["channels"]["sms"]["status"] == "failed"
    assert "no sms address" in doc["channels"]["sms"]["reason"]


async def test_opt_out_and_suppression_list(stack: Stack) -> None:
    await _tenant(stack)
    await stack.api.call(
        "PUT",
        "/v1/templates/promo",
        {"category": "marketing", "email": {"subject": "Offer", "text": "2 for 1"}},
    )
    await stack.api.call(
        "PUT",
        "/v1/contacts/m-3",
        {"email": "c@example.com", "preferences": {"categories": {"marketing": False}}},
    )
    _, a = await stack.api.call(
        "POST", "/v1/notifications", {"to": {"contact_id": "m-3"}, "template_id": "promo"}
    )
    assert a["lane"] == "bulk"
    doc = await _status(stack, a["id"], "suppressed")
    assert "opted out of marketing" in doc["channels"]["email"]["reason"]


async def test_permanent_smtp_rejection_fails_with_reason(stack: Stack) -> None:
    await _tenant(stack)
    stack.smtp.reject["nobody@example.com"] = "550 5.1.1 mailbox unavailable"
    _, a = await stack.api.call(
        "POST",
        "/v1/notifications",
        {"to": {"email": "nobody@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}},
    )
    doc = await _status(stack, a["id"], "failed")
    # reasons are logged: the reply code and a masked address, never the server's text
    assert doc["channels"]["email"]["reason"] == "smtp 550 5.1.1 for n***@example.com"
    assert doc["channels"]["email"]["attempts"] == 1


async def test_transient_smtp_deferral_is_retried(stack: Stack) -> None:
    await _tenant(stack)
    stack.smtp.reject["later@example.com"] = "451 4.7.1 try again later"
    _, a = await stack.api.call(
        "POST",
        "/v1/notifications",
        {"to": {"email": "later@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}},
    )

    await eventually(lambda: stack.smtp.rejected.count("later@example.com") >= 2)
    del stack.smtp.reject["later@example.com"]
    doc = await _status(stack, a["id"], "sent")
    assert doc["channels"]["email"]["attempts"] >= 2


async def test_one_tenant_cannot_read_anothers_notification(stack: Stack) -> None:
    key_a = await _tenant(stack)
    _, a = await stack.api.call(
        "POST",
        "/v1/notifications",
        {"to": {"email": "private@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}},
    )
    key_b = await stack.api.new_tenant("Other chain")
    status, body = await stack.api.call("GET", f"/v1/notifications/{a['id']}", token=key_b)
    assert status == 404 and body["status"] == 404
    status, _ = await stack.api.call("GET", f"/v1/notifications/{a['id']}", token=key_a)
    assert status == 200
    # contacts and templates are per tenant too
    await stack.api.call("PUT", "/v1/contacts/shared-id", {"email": "a@example.com"}, token=key_a)
    status, _ = await stack.api.call("GET", "/v1/contacts/shared-id", token=key_b)
    assert status == 404


async def test_idempotency_key(stack: Stack) -> None:
    await _tenant(stack)
    body = {"to": {"email": "idem@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}}
    s1, r1 = await stack.api.call("POST", "/v1/notifications", body, headers={"Idempotency-Key": "k1"})
    s2, r2 = await stack.api.call("POST", "/v1/notifications", body, headers={"Idempotency-Key": "k1"})
    assert s1 == s2 == 202 and r1["id"] == r2["id"]
    other = {**body, "data": {"x": 1}}
    s3, r3 = await stack.api.call("POST", "/v1/notifications", other, headers={"Idempotency-Key": "k1"})
    assert s3 == 422 and r3["title"] == "Unprocessable Content"
    await _status(stack, r1["id"], "sent")
    assert len([m for m in stack.smtp.snapshot() if m.rcpt_to == ["idem@example.com"]]) == 1


async def test_batch_endpoint(stack: Stack) -> None:
    await _tenant(stack)
    items = [
        {
            "to": {"email": f"b{i}@example.com"},
            "content": {"email": {"subject": f"n{i}", "text": "t"}},
            "idempotency_key": f"b{i}",
        }
        for i in range(20)
    ]
    status, body = await stack.api.call("POST", "/v1/notifications:batch", {"notifications": items})
    assert status == 202, body
    ids = [n["id"] for n in body["notifications"]]
    status, again = await stack.api.call("POST", "/v1/notifications:batch", {"notifications": items[:2]})
    assert [n["id"] for n in again["notifications"]] == ids[:2]
    for nid in ids:
        await _status(stack, nid, "sent")


async def test_expired_before_routing_is_reported_not_sent(stack: Stack) -> None:
    await _tenant(stack)
    _, a = await stack.api.call(
        "POST",
        "/v1/notifications",
        {
            "to": {"email": "late@example.com"},
            "content": {"email": {"subject": "s", "text": "t"}},
            "expires_at": "2020-01-01T00:00:00Z",
        },
    )
    doc = await _status(stack, a["id"], "expired")
    assert "expired" in doc["reason"]
    assert not [m for m in stack.smtp.snapshot() if m.rcpt_to == ["late@example.com"]]
