"""Topic names, derived from one prefix so a test (or a second installation) can live beside another."""

from __future__ import annotations

import re
from dataclasses import dataclass

from herald_common.settings import CHANNELS, LANES

DEFAULT_PARTITIONS = 12
# The services whose consumer runner has a dead-letter topic (``herald dlq`` reads them all).
DEAD_LETTER_SERVICES = ("router", "sender", "tracker", "webhooks")


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "herald"

    def requests(self, lane: str) -> str:
        return f"{self.prefix}.requests.{lane}"

    def deliveries(self, channel: str, lane: str) -> str:
        return f"{self.prefix}.deliveries.{channel}.{lane}"

    @property
    def events(self) -> str:
        """Loyalty events, keyed by tenant and contact; the transactional router consumes them."""
        return f"{self.prefix}.events"

    def tenant_events(self, tenant_id: str) -> str:
        """A tenant's own events topic (tenant setting ``events_topic``), which its systems produce to;
        the transactional router subscribes to every one by :attr:`tenant_events_pattern`."""
        return f"{self.prefix}.tenant-events.{tenant_id}"

    @property
    def tenant_events_pattern(self) -> str:
        return rf"^{re.escape(self.prefix)}\.tenant-events\.[A-Za-z0-9][A-Za-z0-9._\-]{{0,127}}$"

    def tenant_of(self, topic: str) -> str | None:
        """The tenant whose events topic ``topic`` is, else None."""
        head = f"{self.prefix}.tenant-events."
        return topic[len(head) :] if topic.startswith(head) and len(topic) > len(head) else None

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def webhooks(self) -> str:
        """Tenant webhook deliveries (herald_common.webhooks.wire), fanned out from the status topic."""
        return f"{self.prefix}.webhooks"

    @property
    def notices(self) -> str:
        """Event decisions and campaign progress for tenants' webhooks (herald_common.notices)."""
        return f"{self.prefix}.notices"

    def dead_letters(self, service: str) -> str:
        return f"{self.prefix}.deadletter.{service}"

    def group(self, *parts: str) -> str:
        return ".".join((self.prefix, *parts))

    def all(self) -> list[str]:
        names = [self.requests(lane) for lane in LANES]
        names += [self.deliveries(ch, lane) for ch in CHANNELS for lane in LANES]
        names += [self.status, self.webhooks, self.events, self.notices]
        names += [self.dead_letters(s) for s in DEAD_LETTER_SERVICES]
        return names
