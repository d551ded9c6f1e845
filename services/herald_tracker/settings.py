from __future__ import annotations

from pydantic import Field

from herald_common.settings import ConsumerSettings
from herald_common.stats import RecordSettings


class TrackerSettings(ConsumerSettings, RecordSettings):
    status_ttl_s: int = Field(30 * 24 * 3600, ge=60, description="how long notification status is kept")
