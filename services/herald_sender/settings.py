from __future__ import annotations

from pydantic import Field, SecretStr

from herald_common.settings import Channel, ConsumerSettings, Lane


class SenderSettings(ConsumerSettings):
    sender_channel: Channel = Field("email", description="which channel this sender delivers")
    sender_lane: Lane = Field("transactional", description="which lane this sender consumes")
    smtp_host: str = Field("127.0.0.1", description="SMTP server host")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(False, description="upgrade with STARTTLS after connecting")
    smtp_use_tls: bool = Field(False, description="implicit TLS (port 465 style)")
    smtp_pool_size: int = Field(8, ge=1, le=256, description="persistent SMTP connections per process")
    smtp_timeout_s: float = Field(15.0, gt=0, le=300)
    email_from: str = Field("no-reply@herald.local", description="From address when the tenant sets none")
    email_from_name: str | None = Field("Herald", description="From display name when the tenant sets none")
    retry_max_attempts: int = Field(
        5, ge=1, le=100, description="attempts before a delivery is dead-lettered"
    )
    retry_base_delay_s: float = Field(0.5, gt=0, le=600, description="first backoff; doubles per attempt")
    retry_max_delay_s: float = Field(30.0, gt=0, le=3600)
    ledger_ttl_s: int = Field(7 * 24 * 3600, ge=3600, description="how long delivery ledger entries live")
