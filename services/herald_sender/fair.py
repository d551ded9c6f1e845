"""The bulk sender's fair-share gate: a delivery goes now, is parked in the scheduler, or waits.

Before its first provider call in a record, a bulk delivery asks the :class:`FairShare` of its
channel's primary rate-limited provider account whether its tenant is within its share. When the
tenant is ahead, the delivery is parked: put in the scheduler's delayed set (with the header
``x-herald-fair-parked``) for when its tenant's turn comes, and the handler returns, so the partition
moves on to other tenants' deliveries instead of waiting behind one tenant's backlog. The scheduler
produces it back onto the same topic with the same key; it then asks as a returning delivery.

Guarantees are those of a retry through the scheduler: the parked copy is durable in Redis before the
handler returns (and the offset is committed); a crash in between leaves the Kafka record to be
redelivered as well, and the ledger sends only one of the two. The ledger is not touched by parking.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.delayed import DelayedRecord, DelayQueue
from herald_common.wire import Delivery
from herald_providers.fairshare import FairShare

PARKED = "x-herald-fair-parked"


class FairGate:
    def __init__(
        self, share: FairShare, delayed: DelayQueue, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.share = share
        self.delayed = delayed
        self._sleep = sleep  # waits unless the process drains (then raises)

    async def admit(self, rec: ConsumerRecord, d: Delivery, now: float) -> bool:
        """True: send now. False: the delivery was parked and the handler is done with this record."""
        returning = any(name == PARKED for name, _ in rec.headers or ())
        while True:
            answer = await self.share.ask(d.tenant_id, returning=returning)
            if answer.action == "go":
                if answer.delay_s > 0.001:
                    await self._sleep(answer.delay_s)  # the tenant's slot
                return True
            if answer.action == "wait":
                await self._sleep(answer.delay_s)
                continue
            headers = [(n, v) for n, v in rec.headers or () if n != PARKED]
            record = DelayedRecord(
                topic=rec.topic, value=rec.value, key=rec.key, headers=(*headers, (PARKED, b"1"))
            )
            await self.delayed.put(f"fair:{d.delivery_id}:{d.attempt}", record, now + answer.delay_s)
            metrics.FAIR_SHARE_PARKED.labels(d.channel).inc()
            return False
