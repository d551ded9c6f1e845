"""The provider registry: each adapter module's ProviderSpec builds that adapter, for its channel."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from herald_common.channels import CHANNELS
from herald_providers import receipts_sendgrid
from herald_providers.base import supports_batch
from herald_providers.config import build_http_provider
from herald_providers.receipts_twilio import from_callback
from herald_providers.registry import PROVIDERS, parse_names, provider, receipt_parser
from herald_sender.settings import SenderSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)


async def test_each_spec_builds_its_adapter_for_its_channel(
    http_session: aiohttp.ClientSession, service_account_file: Path, service_account: dict[str, object]
) -> None:
    settings = SenderSettings(
        sendgrid_api_key=SecretStr("SG.k"),
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token=SecretStr("t"),
        fcm_credentials_file=service_account_file,
    )
    for spec in PROVIDERS.values():
        assert spec.missing(settings) == []
        adapter = spec.build(settings, http_session if spec.needs_http else None)
        assert (adapter.name, adapter.channel) == (spec.name, spec.channel)
        assert spec.channel in CHANNELS
        assert supports_batch(adapter) == spec.batches, spec.name
        assert spec.account(settings) and "SG.k" not in spec.account(settings)
    assert {p.name for p in PROVIDERS.values() if p.receipts is not None} == {"sendgrid", "twilio"}


def test_specs_name_the_variables_they_miss() -> None:
    empty = SenderSettings()
    assert provider("smtp").missing(empty) == []
    assert provider("twilio").missing(empty) == ["HERALD_TWILIO_ACCOUNT_SID", "HERALD_TWILIO_AUTH_TOKEN"]
    with pytest.raises(ValueError, match="HERALD_FCM_CREDENTIALS_FILE is required"):
        provider("fcm").check(empty)
    with pytest.raises(ValueError, match="unknown provider 'pigeon'"):
        provider("pigeon")


async def test_the_http_factory_refuses_a_provider_that_does_not_speak_http(
    http_session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(ValueError, match="unknown HTTP provider 'smtp'"):
        build_http_provider("smtp", SenderSettings(), http_session)


def test_provider_lists_are_checked_against_the_registry() -> None:
    assert parse_names(" sendgrid , smtp ", "email") == ["sendgrid", "smtp"]
    with pytest.raises(ValueError, match="twilio cannot deliver email"):
        parse_names("twilio", "email")
    with pytest.raises(ValueError, match="comma-separated list of smtp, sendgrid, twilio, fcm"):
        parse_names("pigeon")
    with pytest.raises(ValueError, match="cannot deliver email"):
        SenderSettings(email_providers="twilio").providers()
    assert SenderSettings(sender_channel="sms", email_providers="twilio").providers() == ["twilio"]


def test_receipt_parsers_live_with_their_provider() -> None:
    assert receipt_parser("sendgrid") is receipts_sendgrid.parse
    assert receipt_parser("smtp") is None and receipt_parser("pigeon") is None
    ids = {"tenant_id": "t", "notification_id": "n_1", "delivery_id": "d_1"}
    bounce = receipts_sendgrid.from_event(
        {**ids, "event": "bounce", "email": "a@example.com", "sg_event_id": "e"}
    )
    assert bounce is not None and bounce.event is not None
    assert (bounce.event.channel, bounce.event.status, bounce.suppress) == (
        "email",
        "bounced",
        "a@example.com",
    )
    query = {"tenant": "t", "notification": "n_1", "delivery": "d_1"}
    failed = from_callback(
        query, {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "21610", "To": "+1"}
    )
    assert failed is not None and failed.event is not None
    assert (failed.event.channel, failed.event.status, failed.suppress) == ("sms", "failed", "+1")
    assert from_callback({}, {"MessageSid": "SM1", "MessageStatus": "delivered"}) is None
