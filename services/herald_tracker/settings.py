from __future__ import annotations

from pydantic import Field

from herald_common.settings import ConsumerSettings


class TrackerSettings(ConsumerSettings):
    status_ttl_s: int = Field(30 * 24 * 3600, ge=60, description="how long notification status is kept")
