"""Notices: what Herald tells a tenant about things other than one notification's status.

``<prefix>.notices`` carries them, keyed by tenant and subject; the webhooks service fans each out to the
tenant's endpoints that subscribed to its type, as it does status events. Types:

- ``event.decision``: what the triggers decided for one loyalty event (the same document as
  ``GET /v1/events/{id}``), once the event is processed;
- ``campaign.progress``: a running campaign's counts, at most every few seconds while it fans out;
- ``campaign.finished``: a campaign completed or was cancelled, with its final counts.

``seq`` tells successive notices about one subject apart (a progress notice's count of recipients
published so far); a redelivered notice has the same ``seq`` and so the same webhook id.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from pydantic import Field

from herald_common.kafka import produce_many
from herald_common.topics import Topics
from herald_common.wire import Wire

NoticeType = Literal["event.decision", "campaign.progress", "campaign.finished"]
NOTICE_TYPES: tuple[NoticeType, ...] = ("event.decision", "campaign.progress", "campaign.finished")


class Notice(Wire):
    tenant_id: str
    type: NoticeType
    subject_id: str = Field(description="the event or campaign the notice is about")
    seq: str = ""
    at: float = Field(default_factory=time.time)
    data: dict[str, Any] = Field(default_factory=dict)


async def publish_notices(producer: AIOKafkaProducer, topics: Topics, notices: list[Notice]) -> None:
    """Produce notices and wait for the acknowledgements (acks=all)."""
    if notices:
        records = [
            (f"{n.tenant_id}:{n.subject_id}".encode(), n.model_dump_json(exclude_none=True).encode())
            for n in notices
        ]
        await produce_many(producer, topics.notices, records)
