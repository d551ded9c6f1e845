"""Settings of the HTTP provider adapters and the factory that builds an adapter from them.

Every field reads from ``HERALD_<NAME>`` (for example ``HERALD_TWILIO_BASE_URL``). Base URLs are
overridable so tests and the local stack point adapters at the protocol peers in
``herald_dev.peers``. Per-tenant sender identity (from address, SMS sender) travels in each
message's content and overrides the defaults here.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from herald_providers.base import Provider
from herald_providers.registry import PROVIDERS, provider
from herald_providers.webhooks import load_public_key


class ProviderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore", frozen=True)

    sendgrid_base_url: str = Field(
        "https://api.sendgrid.com", description="SendGrid API root; /v3/mail/send is appended"
    )
    sendgrid_api_key: SecretStr | None = Field(None, description="SendGrid API key with the mail.send scope")
    twilio_base_url: str = Field(
        "https://api.twilio.com", description="Twilio API root; /2010-04-01/Accounts/... is appended"
    )
    twilio_account_sid: str | None = Field(
        None, description="Twilio Account SID (AC...), the basic-auth user"
    )
    twilio_auth_token: SecretStr | None = Field(
        None, description="Twilio Auth Token: basic-auth password and status-callback signing key"
    )
    twilio_from: str | None = Field(
        None,
        description="default SMS sender: E.164 number, alphanumeric id, or Messaging Service SID (MG...)",
    )
    twilio_status_callback_url: str | None = Field(
        None,
        description="URL Twilio posts delivery status to; defaults to "
        "HERALD_PUBLIC_BASE_URL + /v1/receipts/twilio when that is set",
    )
    public_base_url: str | None = Field(
        None,
        description="the gateway's public base URL (https://herald.example.com): where providers post "
        "receipts; Twilio signs callbacks against it",
    )
    fcm_base_url: str = Field("https://fcm.googleapis.com", description="FCM HTTP v1 API root")
    fcm_token_url: str = Field(
        "https://oauth2.googleapis.com/token", description="OAuth2 token endpoint for the service-account JWT"
    )
    fcm_project_id: str | None = Field(
        None, description="Firebase project id; defaults to the service account's project_id"
    )
    fcm_credentials_file: Path | None = Field(None, description="path of the service-account JSON key file")
    provider_timeout_s: float = Field(10.0, gt=0, le=120, description="total timeout of one provider request")

    @field_validator(
        "sendgrid_base_url", "twilio_base_url", "fcm_base_url", "fcm_token_url", "public_base_url"
    )
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return _http(v)


class ReceiptSettings(BaseSettings):
    """What the gateway needs to verify and map provider receipts (``POST /v1/receipts/{provider}``)."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore", frozen=True)

    sendgrid_webhook_public_key: str | None = Field(
        None,
        description="SendGrid Event Webhook verification key (base64 DER or PEM); "
        "unset refuses SendGrid receipts",
    )
    sendgrid_webhook_max_age_s: int = Field(
        600, ge=1, le=86_400, description="refuse signed SendGrid events whose timestamp is older than this"
    )
    twilio_auth_token: SecretStr | None = Field(
        None, description="Twilio Auth Token; verifies X-Twilio-Signature (unset refuses Twilio receipts)"
    )
    public_base_url: str | None = Field(
        None,
        description="the gateway's public base URL; Twilio signs the callback URL under it "
        "(unset: the URL as the gateway received it)",
    )
    receipt_dedupe_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="how long a receipt's event id is remembered to drop replays"
    )
    receipt_max_age_s: int = Field(
        3 * 24 * 3600,
        ge=60,
        description="refuse receipts for notifications issued longer ago than this (at most "
        "HERALD_RECEIPT_DEDUPE_TTL_S, so a replay is either a known duplicate or stale)",
    )

    @model_validator(mode="after")
    def _replays_covered(self) -> ReceiptSettings:
        if self.receipt_max_age_s > self.receipt_dedupe_ttl_s:
            raise ValueError("HERALD_RECEIPT_MAX_AGE_S must not exceed HERALD_RECEIPT_DEDUPE_TTL_S")
        return self

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return _http(v)

    @field_validator("sendgrid_webhook_public_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v:
            load_public_key(v)
        return v or None


def _http(v: str | None) -> str | None:
    if v is None:
        return None
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return v.rstrip("/")


def build_http_provider(name: str, settings: ProviderSettings, session: aiohttp.ClientSession) -> Provider:
    """The HTTP adapter called ``name`` (see :mod:`herald_providers.registry`) on the caller's shared
    session. Raises ValueError naming the missing ``HERALD_*`` variable when it is not configured."""
    spec = provider(name)
    if not spec.needs_http:
        http = [p.name for p in PROVIDERS.values() if p.needs_http]
        raise ValueError(f"unknown HTTP provider {name!r}; expected one of {', '.join(http)}")
    spec.check(settings)
    return spec.build(settings, session)
