from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from herald_common.settings import Channel, ConsumerSettings, Lane
from herald_providers.config import ProviderSettings
from herald_providers.registry import PROVIDERS, ProviderSpec, default_providers, parse_names


class SenderSettings(ConsumerSettings, ProviderSettings):
    sender_channel: Channel = Field("email", description="which channel this sender delivers")
    sender_lane: Lane = Field("transactional", description="which lane this sender consumes")

    # which providers, in failover order -------------------------------------------------------------
    email_providers: str = Field(
        default_providers("email"),
        description="email providers in failover order, comma-separated (smtp, sendgrid)",
    )
    sms_providers: str = Field(
        default_providers("sms"), description="SMS providers in failover order (twilio)"
    )
    push_providers: str = Field(
        default_providers("push"), description="push providers in failover order (fcm)"
    )

    # SMTP ------------------------------------------------------------------------------------------
    smtp_host: str = Field("127.0.0.1", description="SMTP server host")
    smtp_port: int = Field(
        25, ge=1, le=65535, description="SMTP server port (587 with STARTTLS, 465 with TLS)"
    )
    smtp_username: str | None = Field(None, description="SMTP AUTH user; unset sends without auth")
    smtp_password: SecretStr | None = Field(None, description="SMTP AUTH password")
    smtp_starttls: bool = Field(
        False,
        description="require STARTTLS with a verified certificate (default: STARTTLS whenever the "
        "server offers it, unverified)",
    )
    smtp_use_tls: bool = Field(False, description="implicit TLS (port 465 style), certificate verified")
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle that verifies the SMTP server's certificate"
    )
    smtp_pool_size: int = Field(8, ge=1, le=256, description="persistent SMTP connections per process")
    smtp_timeout_s: float = Field(15.0, gt=0, le=300, description="timeout of one SMTP command")
    email_from: str = Field("no-reply@herald.local", description="From address when the tenant sets none")
    email_from_name: str | None = Field("Herald", description="From display name when the tenant sets none")

    # SendGrid batching ------------------------------------------------------------------------------
    sendgrid_batch_max: int = Field(
        1000, ge=1, le=1000, description="most recipients per SendGrid request (SendGrid's limit is 1,000)"
    )
    sendgrid_batch_linger_ms: float = Field(
        20.0,
        ge=0,
        le=5000,
        description="how long a delivery sent on its own (not in a fetched batch) waits for others to share "
        "its SendGrid request",
    )

    # retries ---------------------------------------------------------------------------------------
    retry_max_attempts: int = Field(
        5, ge=1, le=100, description="attempts before a delivery is dead-lettered"
    )
    retry_base_delay_s: float = Field(0.5, gt=0, le=600, description="first backoff; doubles per attempt")
    retry_max_delay_s: float = Field(30.0, gt=0, le=3600, description="longest backoff between attempts")
    retry_inplace_max_s: float = Field(
        0.5,
        ge=0,
        le=10,
        description="backoffs up to this long are waited in place; longer ones go through the scheduler "
        "so the partition keeps moving (0: every retry goes through the scheduler)",
    )
    ledger_ttl_s: int = Field(7 * 24 * 3600, ge=3600, description="how long delivery ledger entries live")

    # circuit breakers --------------------------------------------------------------------------------
    breaker_failure_threshold: int = Field(
        5, ge=1, le=1000, description="consecutive provider failures that open its circuit"
    )
    breaker_cooldown_s: float = Field(
        30.0, gt=0, le=3600, description="how long an open circuit refuses calls before one probe"
    )

    # shared outbound rate limits per provider account (0 = unlimited) ---------------------------------
    smtp_rate_per_s: float = Field(0.0, ge=0, description="SMTP messages per second, all replicas together")
    smtp_burst: int = Field(50, ge=1, description="SMTP messages allowed at once above the rate")
    sendgrid_rate_per_s: float = Field(0.0, ge=0, description="SendGrid requests per second, all replicas")
    sendgrid_burst: int = Field(20, ge=1, description="SendGrid requests allowed at once above the rate")
    twilio_rate_per_s: float = Field(0.0, ge=0, description="Twilio messages per second, all replicas")
    twilio_burst: int = Field(20, ge=1, description="Twilio messages allowed at once above the rate")
    fcm_rate_per_s: float = Field(0.0, ge=0, description="FCM messages per second, all replicas")
    fcm_burst: int = Field(100, ge=1, description="FCM messages allowed at once above the rate")
    rate_limit_bulk_reserve: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of each burst kept for the transactional lane; bulk only takes what is left",
    )
    fair_share: bool = Field(
        True,
        description="bulk lane: share each rate-limited provider's rate fairly between tenants with work "
        "waiting (a tenant ahead of its share has its deliveries parked in the scheduler)",
    )
    fair_share_horizon_s: float = Field(
        120.0,
        gt=1,
        le=3600,
        description="how far ahead a tenant's deliveries may be parked; beyond it they wait in place "
        "(bounds what Redis holds per tenant)",
    )

    @field_validator("email_providers", "sms_providers", "push_providers")
    @classmethod
    def _providers(cls, v: str) -> str:
        return ",".join(parse_names(v))

    def providers(self) -> list[str]:
        """The channel's providers in failover order (``HERALD_<CHANNEL>_PROVIDERS``)."""
        return parse_names(getattr(self, f"{self.sender_channel}_providers"), self.sender_channel)

    def provider_specs(self) -> list[ProviderSpec]:
        return [PROVIDERS[name] for name in self.providers()]

    def rate_limit(self, provider: str) -> tuple[float, int]:
        """(rate per second, burst) of a provider account; rate 0 means no limit."""
        return PROVIDERS[provider].rate_limit(self)
