from __future__ import annotations

from pydantic import Field, SecretStr

from herald_common.ids import id_secret_from_setting
from herald_common.settings import ConsumerSettings, Lane


class RouterSettings(ConsumerSettings):
    router_lane: Lane = Field("transactional", description="which request lane this router consumes")
    template_cache_s: float = Field(2.0, ge=0, le=300, description="how long a template may be cached")
    router_report_queued: bool | None = Field(
        None,
        description="emit a per-channel queued status when a delivery is routed; unset: on for the "
        "transactional lane, off for bulk (a campaign's messages then show accepted until sent, and the "
        "tracker does half the work per recipient)",
    )
    # Loyalty events (consumed by the transactional router).
    id_secret: SecretStr | None = Field(
        None, description="the gateway's HERALD_ID_SECRET: signs the notification ids events produce"
    )
    idempotency_ttl_s: int = Field(
        24 * 3600, ge=60, description="how long an event's notifications are remembered against republishing"
    )
    event_outcome_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="how long GET /v1/events/{id} shows what the triggers decided"
    )

    unsubscribe_secret: SecretStr | None = Field(
        None,
        description="seals the one-click unsubscribe tokens in marketing email; the gateway's value "
        "(unset: derived from the id secret)",
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8080",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the gateway's public base URL: unsubscribe links in marketing email point under it",
    )
    tenant_events_refresh_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="how often the transactional router looks for tenants' events topics created since "
        "(a tenant's topic is consumed within about this long of its events_topic being enabled)",
    )

    def id_secret_bytes(self) -> bytes | None:
        return id_secret_from_setting(self.id_secret.get_secret_value()) if self.id_secret else None

    def reports_queued(self) -> bool:
        return (
            self.router_lane == "transactional"
            if self.router_report_queued is None
            else self.router_report_queued
        )
