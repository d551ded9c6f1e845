from __future__ import annotations

from pydantic import Field

from herald_common.settings import ConsumerSettings, Lane


class RouterSettings(ConsumerSettings):
    router_lane: Lane = Field("transactional", description="which request lane this router consumes")
    template_cache_s: float = Field(2.0, ge=0, le=300, description="how long a template may be cached")
