from __future__ import annotations

from pydantic import Field, SecretStr

from herald_common.ids import id_secret_from_setting
from herald_common.settings import CommonSettings


class CampaignsSettings(CommonSettings):
    id_secret: SecretStr | None = Field(
        None, description="the gateway's HERALD_ID_SECRET: signs the notification ids campaigns produce"
    )
    template_cache_s: float = Field(
        2.0, ge=0, le=300, description="how long a template's category may be cached"
    )
    campaigns_poll_interval_s: float = Field(
        0.5, gt=0, le=60, description="how often a campaigns replica looks for campaigns due to fan out"
    )
    campaigns_lease_s: float = Field(
        10.0,
        gt=1,
        le=600,
        description="how long a replica's claim on a campaign lasts unless renewed; a killed replica's "
        "campaigns are taken over after this",
    )
    campaigns_batch_max: int = Field(
        1000, ge=1, le=5000, description="most recipients published per batch (one checkpoint each)"
    )
    campaign_progress_s: float = Field(
        5.0,
        ge=0.5,
        le=3600,
        description="at most how often a running campaign's campaign.progress webhook goes out",
    )
    campaigns_max_running: int = Field(8, ge=1, le=1000, description="campaigns one replica fans out at once")

    def id_secret_bytes(self) -> bytes | None:
        return id_secret_from_setting(self.id_secret.get_secret_value()) if self.id_secret else None
