from __future__ import annotations

from pydantic import Field

from herald_common.settings import CommonSettings


class SchedulerSettings(CommonSettings):
    scheduler_poll_interval_s: float = Field(
        0.05, gt=0, le=10, description="longest pause between looks for due items while idle"
    )
    scheduler_lease_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="how long a claimed item is reserved; a scheduler that dies mid-release has its "
        "items released again after this",
    )
    scheduler_batch: int = Field(2000, ge=1, le=10_000, description="items claimed and produced per round")
