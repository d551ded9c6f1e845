from __future__ import annotations

from pydantic import Field

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

    def reports_queued(self) -> bool:
        return (
            self.router_lane == "transactional"
            if self.router_report_queued is None
            else self.router_report_queued
        )
