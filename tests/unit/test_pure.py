"""Unit tests of pure logic: ids, status folding, channel planning, templating, validation, settings."""

from __future__ import annotations

import time

import pydantic
import pytest

from herald_common.ids import NotificationIds, delivery_id, partition_key
from herald_common.logging import mask
from herald_common.schemas import ChannelContent, Contact, ContactIn, NotificationIn, Recipient, TemplateIn
from herald_common.settings import CommonSettings, SettingsError, load
from herald_common.status import overall, view
from herald_common.templating import TemplateRenderError, check_syntax, render_channel, template_context
from herald_common.wire import NotificationRequest
from herald_providers.base import OutboundMessage
from herald_providers.smtp import SmtpConfig, build_message
from herald_router.routing import plan_channels


def test_delivery_id_is_deterministic_and_distinct() -> None:
    a = delivery_id("n_1", "email", "a@example.com")
    assert a == delivery_id("n_1", "email", "a@example.com")
    assert a != delivery_id("n_1", "sms", "a@example.com")
    assert a != delivery_id("n_2", "email", "a@example.com")


def test_notification_ids_sort_by_creation_are_unique_and_bound_to_their_tenant() -> None:
    ids = NotificationIds(b"secret")
    first = ids.new("tenant-a")
    time.sleep(0.002)
    later = [ids.new("tenant-a") for _ in range(1000)]
    assert len(set(later)) == 1000
    assert all(first < x for x in later)
    issued = ids.issued_at(first, "tenant-a")
    assert issued is not None and abs(issued - time.time()) < 5
    assert ids.issued_at(first, "tenant-b") is None  # another tenant's id is not found
    assert NotificationIds(b"other").issued_at(first, "tenant-a") is None
    assert ids.issued_at(first[:-1] + ("0" if first[-1] != "0" else "1"), "tenant-a") is None
    assert ids.issued_at("n_nothex", "tenant-a") is None
    assert partition_key("t", "c") == b"t:c"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ada@example.com", "a***@example.com"),
        ("+447911123456", "+44***56"),
        ("tok-abcdefghijkl", "tok-***"),
        ("", ""),
    ],
)
def test_mask_never_shows_whole_addresses(address: str, expected: str) -> None:
    assert mask(address) == expected


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ({}, "accepted"),
        ({"email": "queued"}, "accepted"),
        ({"email": "sent", "sms": "failed"}, "partially_failed"),
        ({"email": "delivered", "sms": "bounced"}, "partially_failed"),
        ({"email": "sent", "sms": "expired", "push": "sending"}, "partially_failed"),
        ({"email": "sent", "sms": "suppressed"}, "sent"),
        ({"email": "delivered", "sms": "cancelled"}, "delivered"),
        ({"email": "failed", "sms": "bounced"}, "bounced"),
        ({"email": "delivered", "sms": "sent"}, "delivered"),
        ({"email": "suppressed", "sms": "failed"}, "failed"),
        ({"email": "suppressed"}, "suppressed"),
        ({"email": "sending", "sms": "queued"}, "sending"),
        ({"email": "bounced", "sms": "suppressed"}, "bounced"),
    ],
)
def test_overall_status(channels: dict[str, str], expected: str) -> None:
    assert overall({"status": "accepted"}, {c: {"status": s} for c, s in channels.items()}) == expected


def test_notification_level_failure_shows_reason() -> None:
    doc = view("n_1", 0.0, {"n": b'{"status":"failed","reason":"unknown contact x"}'})
    assert doc["status"] == "failed" and doc["reason"] == "unknown contact x" and doc["channels"] == {}


def _req(**kw: object) -> NotificationRequest:
    return NotificationRequest(
        id="n_1", tenant_id="t", lane="transactional", accepted_at=0.0, to={"contact_id": "c1"}, **kw
    )  # type: ignore[arg-type]


CONTENT = ChannelContent.model_validate(
    {"email": {"subject": "s", "text": "t"}, "sms": {"text": "hi"}, "push": {"body": "b"}}
)


def test_plan_channels_covers_missing_address_opt_outs_and_tokens() -> None:
    contact = Contact(
        id="c1",
        email="a@example.com",
        push_tokens=[
            {"token": "tok-aaaaaaaa", "platform": "ios"},
            {"token": "tok-bbbbbbbb", "platform": "web"},
        ],
        preferences={"channels": {"email": False}, "categories": {"marketing": False}},
    )
    plans = {p.channel: p for p in plan_channels(_req(), contact, CONTENT, "transactional")}
    assert plans["email"].skip_status == "suppressed"
    assert plans["sms"].skip_status == "failed" and "no sms address" in (plans["sms"].reason or "")
    assert plans["push"].addresses == ["tok-aaaaaaaa", "tok-bbbbbbbb"]
    plans = {p.channel: p for p in plan_channels(_req(), contact, CONTENT, "marketing")}
    assert plans["push"].skip_status == "suppressed" and "marketing" in (plans["push"].reason or "")


def test_plan_channels_reports_missing_content_for_requested_channel() -> None:
    only_email = ChannelContent.model_validate({"email": {"subject": "s", "text": "t"}})
    (plan,) = plan_channels(
        _req(channels=["sms"]), Contact(id="c1", phone="+447911123456"), only_email, "transactional"
    )
    assert plan.skip_status == "failed" and "no sms content" in (plan.reason or "")


def test_render_escapes_html_only_and_exposes_attributes() -> None:
    content = ChannelContent.model_validate(
        {"email": {"subject": "Hi {{ contact.first_name }}", "html": "<p>{{ contact.first_name }}</p>"}}
    )
    contact = Contact(id="c1", email="a@example.com", attributes={"first_name": "<b>Al</b>"})
    req = _req()
    ctx = template_context(tenant_id=req.tenant_id, tenant=None, data=req.data, contact=contact, to=req.to)
    out = render_channel(content, "email", ctx)
    assert out["subject"] == "Hi <b>Al</b>"
    assert out["html"] == "<p>&lt;b&gt;Al&lt;/b&gt;</p>"


def test_sandbox_blocks_python_internals() -> None:
    content = ChannelContent.model_validate({"sms": {"text": "{{ ''.__class__.__mro__ }}"}})
    with pytest.raises(TemplateRenderError):
        render_channel(content, "sms", {"contact": {}, "data": {}, "tenant": {}})


def test_syntax_errors_name_the_field() -> None:
    template = TemplateIn.model_validate({"email": {"subject": "ok", "text": "{% for %}"}})
    assert [f for f, _ in check_syntax(template)] == ["email.text"]


def test_validation_normalises_and_rejects() -> None:
    assert ContactIn(phone="+447911123456").phone == "+447911123456"
    for not_e164 in ("07911 123456", "+44 7911 123456", "+0447911123456"):
        with pytest.raises(pydantic.ValidationError):
            ContactIn(phone=not_e164)
    with pytest.raises(pydantic.ValidationError):
        ContactIn.model_validate_json(b'{"attributes": {"points": 18446744073709551616}}')  # > 64 bits
    with pytest.raises(pydantic.ValidationError):
        ContactIn.model_validate_json(b'{"preferences": {"channels": {"email": 0}}}')  # 0 is not false
    with pytest.raises(pydantic.ValidationError):
        Recipient()
    with pytest.raises(pydantic.ValidationError):
        NotificationIn.model_validate({"to": {"email": "a@example.com"}})  # neither template nor content
    with pytest.raises(pydantic.ValidationError):
        NotificationIn.model_validate(
            {"to": {"email": "a@example.com"}, "template_id": "x", "expires_at": "2030-01-01T00:00:00"}
        )  # naive time


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_REDIS_URL", "http://nope")
    monkeypatch.setenv("HERALD_KAFKA_BOOTSTRAP", "no-port")
    with pytest.raises(SettingsError) as exc:
        load(CommonSettings)
    text = str(exc.value)
    assert "HERALD_REDIS_URL" in text and "HERALD_KAFKA_BOOTSTRAP" in text


def test_smtp_message_carries_delivery_id_and_both_bodies() -> None:
    msg = build_message(
        OutboundMessage(
            "d_1",
            "t",
            "email",
            "a@example.com",
            {"subject": "S", "text": "T", "html": "<p>H</p>", "from": "x@example.com"},
        ),
        SmtpConfig(),
    )
    assert msg["X-Herald-Delivery-Id"] == "d_1" and "d_1" in msg["Message-ID"]
    assert msg["From"] == "Herald <x@example.com>"
    assert {p.get_content_type() for p in msg.get_payload()} == {"text/plain", "text/html"}  # type: ignore[union-attr]
    accented = build_message(
        OutboundMessage(
            "d_2", "t", "email", "a@example.com", {"subject": "Réservation", "text": "Très bien"}
        ),
        SmtpConfig(),
    )
    assert "Réservation" not in accented.as_string() and accented["Subject"].encode().startswith("=?utf-8?")


async def test_ttl_cache_loads_once_and_never_caches_a_miss() -> None:
    from herald_common.cache import TTLCache

    cache: TTLCache[str] = TTLCache(ttl_s=60)
    calls: list[str] = []

    async def load() -> str | None:
        calls.append("x")
        return None if len(calls) == 1 else "value"

    assert await cache.get_or_load("k", load) is None  # a miss: asked again next time
    assert await cache.get_or_load("k", load) == "value"
    assert await cache.get_or_load("k", load) == "value"  # served from the cache
    assert len(calls) == 2
