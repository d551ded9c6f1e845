"""Every channel is declared once (herald_common.channels) and every provider once (its adapter module,
collected by herald_providers.registry); the rest of Herald works from those declarations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from herald_common.channels import CHANNELS, ChannelSpec, TemplateField, spec
from herald_common.schemas import ChannelContent, Contact, Tenant
from herald_common.wire import NotificationRequest, WireRecipient
from herald_dev.launcher import channels_off, services
from herald_providers.registry import PROVIDERS, default_providers, for_channel, missing_for_channel
from herald_router.routing import addresses_for, plan_channels, requested_channels
from herald_sender.settings import SenderSettings

ROOT = Path(__file__).resolve().parents[2]
CONTACT = Contact(
    id="c1",
    email="a@example.com",
    phone="+447911123456",
    push_tokens=[{"token": "tok-aaaaaaaa", "platform": "ios"}],
)
INLINE = {"email": "b@example.com", "phone": "+447911654321", "push_token": "tok-inline-1234"}
SAMPLE_CONTENT = {
    "email": {"subject": "s", "text": "t"},
    "sms": {"text": "hi"},
    "push": {"title": "t", "body": "b", "data": {"k": "v"}},
}


def _req(**kw: Any) -> NotificationRequest:
    base: dict[str, Any] = {"id": "n_1", "tenant_id": "t", "lane": "transactional", "accepted_at": 0.0}
    return NotificationRequest.model_validate({**base, "to": {"contact_id": "c1"}, **kw})


@pytest.mark.parametrize("name", list(CHANNELS))
def test_every_channel_is_fully_declared(name: str) -> None:
    ch = CHANNELS[name]
    assert ch.name == name
    # its content model validates sample content, and ChannelContent carries it under the channel name
    ch.content_model.model_validate(SAMPLE_CONTENT[name])
    assert ChannelContent.model_fields[name].annotation == ch.content_model | None
    # template fields exist on the model
    assert ch.template_fields
    for f in ch.template_fields:
        assert f.name in ch.content_model.model_fields, (name, f.name)
    # addresses: from the contact, and an inline address in the request wins
    assert ch.addresses(WireRecipient(contact_id="c1"), CONTACT)
    inline = WireRecipient.model_validate({ch.recipient_field: INLINE[ch.recipient_field]})
    assert ch.addresses(inline, CONTACT) == [INLINE[ch.recipient_field]]
    assert ch.addresses(WireRecipient(contact_id="c1"), None) == []
    # at least one provider, and a default one for HERALD_<CHANNEL>_PROVIDERS
    assert for_channel(name) and default_providers(name)
    assert SenderSettings(sender_channel=name).providers() == default_providers(name).split(",")


def test_every_channel_has_senders_in_the_chart() -> None:
    values = yaml.safe_load((ROOT / "charts/herald/values.yaml").read_text())
    assert set(values["sender"]["channels"]) == set(CHANNELS)
    for name in CHANNELS:
        assert f"{name}Providers" in values["providers"], name


def test_every_provider_belongs_to_a_channel_and_has_its_rate_limit_settings() -> None:
    fields = SenderSettings.model_fields
    for p in PROVIDERS.values():
        assert p.channel in CHANNELS, p.name
        assert f"{p.name}_rate_per_s" in fields and f"{p.name}_burst" in fields, p.name
        assert all(f in fields for f in p.required), p.name
        assert p.rate_limit(SenderSettings()) == (0.0, int(fields[f"{p.name}_burst"].default))


def test_sender_identity_comes_from_the_spec() -> None:
    tenant = Tenant(
        id="t",
        name="T",
        email_from="news@example.com",
        email_from_name="News",
        sms_from="Chain",
        created_at=datetime.now(UTC),
    )
    assert spec("email").identity(tenant) == {"from": "news@example.com", "from_name": "News"}
    assert spec("sms").identity(tenant) == {"from": "Chain"}
    assert spec("push").identity(tenant) == {}
    assert spec("email").fallback_identity(SenderSettings())["from"] == SenderSettings().email_from


# --- a toy channel works through routing without edits elsewhere ---------------------------------------
class WhatsAppContent(pydantic.BaseModel):
    text: str


class ToyContent(pydantic.BaseModel):
    email: Any = None
    whatsapp: WhatsAppContent | None = None


WHATSAPP = ChannelSpec(
    name="whatsapp",
    content_model=WhatsAppContent,
    template_fields=(TemplateField("text"),),
    recipient_field="whatsapp",
    contact_addresses=lambda c: [str(c.attributes["whatsapp"])] if "whatsapp" in c.attributes else [],
)
WITH_TOY = {**CHANNELS, WHATSAPP.name: WHATSAPP}


def test_a_toy_channel_is_planned_from_its_spec_alone() -> None:
    contact = Contact(id="c1", attributes={"whatsapp": "+447911123456"})
    content = ToyContent(whatsapp=WhatsAppContent(text="hi"))
    assert requested_channels(_req(), content, WITH_TOY) == ["whatsapp"]
    (plan,) = plan_channels(_req(), contact, content, "transactional", channels=WITH_TOY)
    assert plan.channel == "whatsapp" and plan.addresses == ["+447911123456"] and plan.skip_status is None
    (plan,) = plan_channels(_req(), Contact(id="c1"), content, "transactional", channels=WITH_TOY)
    assert plan.skip_status == "failed" and "no whatsapp address" in (plan.reason or "")
    opted_out = Contact(id="c1", attributes={"whatsapp": "+447911123456"})
    opted_out.preferences.channels["whatsapp"] = False  # type: ignore[index]
    (plan,) = plan_channels(_req(), opted_out, content, "transactional", channels=WITH_TOY)
    assert plan.skip_status == "suppressed"
    # the real channels do not know it: not planned from content, an error when asked for by name
    assert plan_channels(_req(), contact, content, "transactional") == []
    asked = _req().model_copy(update={"channels": ["whatsapp"]})
    with pytest.raises(ValueError, match="unknown channel 'whatsapp'"):
        plan_channels(asked, contact, content, "transactional")


def test_an_unknown_channel_is_an_error_not_a_fall_through_to_push() -> None:
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        spec("fax")
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        addresses_for("fax", _req(), CONTACT)
    content = ChannelContent.model_validate(SAMPLE_CONTENT)
    req = _req().model_copy(update={"channels": ["email", "fax"]})
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        plan_channels(req, CONTACT, content, "transactional")
    with pytest.raises(pydantic.ValidationError):
        _req(channels=["fax"])


def test_content_lists_its_channels_in_channel_order() -> None:
    content = ChannelContent.model_validate(
        {"push": SAMPLE_CONTENT["push"], "email": SAMPLE_CONTENT["email"]}
    )
    assert content.channels() == ["email", "push"]
    with pytest.raises(pydantic.ValidationError, match="at least one of email, sms, push"):
        ChannelContent.model_validate({})


# --- herald dev starts only the senders that can build their providers ---------------------------------
def test_dev_turns_off_push_senders_when_fcm_points_elsewhere_without_credentials() -> None:
    env = {
        "HERALD_TWILIO_BASE_URL": "http://127.0.0.1:1",
        "HERALD_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "HERALD_TWILIO_AUTH_TOKEN": "token",
        "HERALD_FCM_BASE_URL": "https://fcm.example.com",  # external, so herald dev starts no FCM peer
    }
    off = channels_off(env)
    assert off == {"push": ["HERALD_FCM_CREDENTIALS_FILE is not set"]}
    names = [name for name, _ in services([ch for ch in CHANNELS if ch not in off])]
    assert not [n for n in names if n.startswith("sender-push-")]
    assert "sender-email-transactional" in names and "sender-sms-bulk" in names
    assert channels_off({**env, "HERALD_FCM_CREDENTIALS_FILE": "/tmp/sa.json"}) == {}


def test_dev_names_the_missing_variables_of_a_configured_provider_list() -> None:
    assert missing_for_channel("email", {"HERALD_EMAIL_PROVIDERS": "sendgrid,smtp"}) == [
        "HERALD_SENDGRID_API_KEY is not set"
    ]
    assert missing_for_channel("email", {}) == []  # SMTP needs nothing beyond its defaults
    (problem,) = missing_for_channel("sms", {"HERALD_SMS_PROVIDERS": "smtp"})
    assert problem.startswith("HERALD_SMS_PROVIDERS") and "cannot deliver sms" in problem
