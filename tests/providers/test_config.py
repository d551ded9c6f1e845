"""Provider settings from HERALD_* variables and the adapter factory."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from herald_providers.config import ProviderSettings, build_http_provider
from herald_providers.fcm import FcmProvider
from herald_providers.sendgrid import SendGridProvider
from herald_providers.twilio import TwilioProvider


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)


def test_settings_read_herald_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_TWILIO_BASE_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("HERALD_SENDGRID_API_KEY", "SG.secret")
    monkeypatch.setenv("HERALD_PROVIDER_TIMEOUT_S", "3")

    settings = ProviderSettings()

    assert settings.twilio_base_url == "http://127.0.0.1:8081"
    assert (
        settings.sendgrid_api_key is not None and settings.sendgrid_api_key.get_secret_value() == "SG.secret"
    )
    assert "SG.secret" not in repr(settings)
    assert settings.provider_timeout_s == 3.0
    assert all(field.description for field in ProviderSettings.model_fields.values())


def test_base_urls_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_FCM_BASE_URL", "ftp://x")
    with pytest.raises(ValueError, match="http"):
        ProviderSettings()


async def test_factory_builds_each_adapter_and_names_missing_settings(
    http_session: aiohttp.ClientSession, service_account_file: Path, service_account: dict[str, object]
) -> None:
    configured = ProviderSettings(
        sendgrid_api_key=SecretStr("SG.k"),
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token=SecretStr("t"),
        fcm_credentials_file=service_account_file,
    )
    assert isinstance(build_http_provider("sendgrid", configured, http_session), SendGridProvider)
    assert isinstance(build_http_provider("twilio", configured, http_session), TwilioProvider)
    assert isinstance(build_http_provider("fcm", configured, http_session), FcmProvider)

    empty = ProviderSettings()
    for name, variable in [
        ("sendgrid", "HERALD_SENDGRID_API_KEY"),
        ("twilio", "HERALD_TWILIO_ACCOUNT_SID"),
        ("fcm", "HERALD_FCM_CREDENTIALS_FILE"),
    ]:
        with pytest.raises(ValueError, match=variable):
            build_http_provider(name, empty, http_session)
    with pytest.raises(ValueError, match="unknown"):
        build_http_provider("pigeon", empty, http_session)
