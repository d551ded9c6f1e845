"""Topic names, derived from one prefix so a test (or a second installation) can live beside another."""

from __future__ import annotations

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

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def webhooks(self) -> str:
        """Tenant webhook deliveries (herald_common.webhooks.wire), fanned out from the status topic."""
        return f"{self.prefix}.webhooks"

    def dead_letters(self, service: str) -> str:
        return f"{self.prefix}.deadletter.{service}"

    def group(self, *parts: str) -> str:
        return ".".join((self.prefix, *parts))

    def all(self) -> list[str]:
        names = [self.requests(lane) for lane in LANES]
        names += [self.deliveries(ch, lane) for ch in CHANNELS for lane in LANES]
        names += [self.status, self.webhooks, self.events]
        names += [self.dead_letters(s) for s in DEAD_LETTER_SERVICES]
        return names
