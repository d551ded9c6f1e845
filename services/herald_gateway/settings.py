from __future__ import annotations

from pydantic import Field, SecretStr

from herald_common.ids import id_secret_from_setting
from herald_common.settings import CommonSettings
from herald_common.stats import RecordSettings
from herald_common.webhooks.targets import TargetSettings
from herald_providers.config import ReceiptSettings


class GatewaySettings(CommonSettings, ReceiptSettings, TargetSettings, RecordSettings):
    http_host: str = Field("127.0.0.1", description="address the public API listens on")
    http_port: int = Field(8080, ge=0, le=65535, description="port of the public API (and its health routes)")
    admin_token: SecretStr = Field(..., min_length=16, description="bearer token for /admin/v1 endpoints")
    max_body_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="larger request bodies are refused with 413 (a batch's limit; each notification "
        "must also fit in one queue record of 1 MiB, else 413 too)",
    )
    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="a request's line and headers must be complete within this many seconds of the "
        "connection opening or the previous response (also the idle keep-alive timeout)",
    )
    http_body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a request body must arrive in full within this many seconds (else 408)",
    )
    api_key_cache_s: float = Field(5.0, ge=0, le=300, description="how long a resolved API key is cached")
    tenant_default_rate_per_s: float = Field(
        1000.0,
        ge=0,
        le=1_000_000,
        description="intake limit of a tenant that sets none, notifications/s across gateways (0: none)",
    )
    tenant_default_burst: int = Field(
        10_000, ge=1, le=10_000_000, description="burst of that default limit (at least one full :batch)"
    )
    idempotency_ttl_s: int = Field(24 * 3600, ge=60, description="how long an Idempotency-Key is remembered")
    id_secret: SecretStr | None = Field(
        None,
        description="signs notification ids; the same on every gateway (default: a random secret "
        "the first gateway keeps in Redis; rotating the admin token never changes it)",
    )
    unsubscribe_secret: SecretStr | None = Field(
        None,
        description="seals the one-click unsubscribe tokens of marketing email; the same on gateways and "
        "routers (unset: derived from the id secret, so set it to rotate unsubscribe links alone)",
    )
    status_ttl_s: int = Field(30 * 24 * 3600, ge=60, description="how long notification status is kept")

    def id_secret_bytes(self) -> bytes | None:
        """The key from ``HERALD_ID_SECRET``; None when unset (then the shared one in Redis is used)."""
        if self.id_secret is None:
            return None
        return id_secret_from_setting(self.id_secret.get_secret_value())
