from __future__ import annotations

from pydantic import Field

from herald_common.settings import ConsumerSettings
from herald_common.webhooks.targets import TargetSettings


class WebhooksSettings(ConsumerSettings, TargetSettings):
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=120, description="how long one webhook request may take before it counts as failed"
    )
    webhook_retry_base_delay_s: float = Field(
        5.0, gt=0, le=3600, description="wait before the first webhook retry; doubled per attempt (jittered)"
    )
    webhook_retry_max_delay_s: float = Field(
        36_000.0, gt=0, le=86_400, description="longest wait between two webhook attempts"
    )
    webhook_retry_for_s: float = Field(
        86_400.0,
        ge=0,
        le=7 * 86_400,
        description="a webhook delivery is retried until an attempt fails this long after its first "
        "one; then it goes to the dead-letter topic",
    )
    webhook_pause_after_s: float = Field(
        86_400.0,
        ge=0,
        le=30 * 86_400,
        description="an endpoint whose every attempt has failed for this long is paused",
    )
    webhook_pause_min_failures: int = Field(
        10, ge=1, le=100_000, description="and only once at least this many attempts in a row failed"
    )
    webhook_endpoint_cache_s: float = Field(
        2.0, ge=0, le=300, description="how long a tenant's endpoint list is cached when fanning out"
    )
