"""Intake: THE one way anything publishes notification requests (the gateway's HTTP API today;
events and campaigns next).

A caller hands over validated :class:`~herald_common.schemas.NotificationIn` requests (each with an
optional client idempotency key and an optional notification id of its own choosing, e.g. a
deterministic one) and gets back, per request, the accepted id and lane. In order:

1. **Idempotency** (:mod:`herald_common.intake.idempotency`): every key is reserved atomically; one
   key in flight or used with another request fails the whole call (nothing is produced, the
   reservations just taken are released); a key already used with the same request replays its result.
2. **Lane**: the request's ``lane``; else by category (the request's, else its template's, cached):
   marketing → bulk, anything else → transactional.
3. **Admission**: the caller's optional ``admit(count, lane)`` (the gateway's per-tenant quota) for the
   requests that will be produced; it may raise to refuse them (reservations are released).
4. **Produce** with acks=all, keyed by tenant and recipient (per-recipient order): one record with
   ``send_and_wait``, many with :func:`~herald_common.kafka.produce_many`. A request whose record
   would be over :data:`~herald_common.kafka.MAX_RECORD_BYTES` raises :class:`RecordTooLarge` before
   anything is produced (a size error is permanent, not an outage). A produce that fails raises
   :class:`QueueUnavailable`: nothing was accepted, but some records may be in Kafka (a lost
   acknowledgement), so each key stays *unsure* with the id it was written under, and the client's
   retry of the same request is written under that same id (the senders' ledger sends it once).
5. The results are stored under their keys for the TTL, then returned.

It knows nothing about HTTP: the gateway maps the exceptions to problem documents.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from herald_common import metrics
from herald_common.cache import TTLCache
from herald_common.ids import NotificationIds, partition_key
from herald_common.intake.idempotency import (
    Claim,
    IdempotencyError,
    IdempotencyInFlight,
    IdempotencyMismatch,
    IdempotencyStore,
    fingerprint,
)
from herald_common.kafka import MAX_RECORD_BYTES, SIZE_ERRORS, produce_many, record_size
from herald_common.policy import is_transactional
from herald_common.redisio import Keys
from herald_common.schemas import NotificationIn, Tenant
from herald_common.settings import Lane
from herald_common.store import Store
from herald_common.topics import Topics
from herald_common.wire import NotificationRequest, Origin

Admit = Callable[[int, Lane], Awaitable[None]]

__all__ = [
    "Accepted",
    "Admit",
    "IdempotencyError",
    "IdempotencyInFlight",
    "IdempotencyMismatch",
    "IdempotencyRejected",
    "Intake",
    "LaneNotAllowed",
    "QueueUnavailable",
    "RecordTooLarge",
    "Submission",
    "fingerprint",
    "republish",
]


class QueueUnavailable(Exception):
    """Kafka did not acknowledge the write: nothing was accepted, and retrying with the same
    idempotency key is safe."""


class LaneNotAllowed(Exception):
    """A request asked for the transactional lane with a category that may not use it; nothing was
    produced."""

    def __init__(self, category: str, index: int = 0) -> None:
        super().__init__(
            f"category {category!r} may not use the transactional lane (the tenant's transactional "
            "categories may; others travel on the bulk lane)"
        )
        self.category, self.index = category, index


class RecordTooLarge(Exception):
    """Some requests would be records over the queue's size limit (``sizes``: request index → bytes;
    empty when the broker refused the write for its size): nothing was produced, and retrying the
    same request can never succeed."""

    def __init__(self, sizes: dict[int, int]) -> None:
        super().__init__(f"records over {MAX_RECORD_BYTES} bytes: {sizes}")
        self.sizes = sizes
        self.limit = MAX_RECORD_BYTES


class IdempotencyRejected(Exception):
    """Some requests' keys are in flight or were used with another request (``errors``, each with the
    request's ``index``); nothing was produced."""

    def __init__(self, errors: list[IdempotencyError]) -> None:
        super().__init__("; ".join(f"[{e.index}] {e.message}" for e in errors))
        self.errors = errors

    @property
    def mismatch(self) -> bool:
        """True when retrying cannot help (a key used with another request), not just in flight."""
        return any(isinstance(e, IdempotencyMismatch) for e in self.errors)


@dataclass(frozen=True, slots=True)
class Submission:
    request: NotificationIn
    idempotency_key: str | None = None
    notification_id: str | None = None  # the caller's own id (deterministic); default: a new signed id
    origin: Origin | None = None  # campaign or trigger that decided it, carried to every status event


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    lane: Lane
    replayed: bool = False

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "status": "accepted", "lane": self.lane}


class Intake:
    def __init__(
        self,
        *,
        producer: AIOKafkaProducer,
        redis: aioredis.Redis,
        keys: Keys,
        topics: Topics,
        store: Store,
        category_cache: TTLCache[str],
        ids: NotificationIds,
        idempotency_ttl_s: int,
        tenant_cache: TTLCache[Tenant] | None = None,
    ) -> None:
        self.producer, self.keys, self.topics, self.store = producer, keys, topics, store
        self.category_cache, self.ids = category_cache, ids
        self.tenant_cache: TTLCache[Tenant] = tenant_cache or TTLCache(category_cache.ttl_s)
        self.idempotency = IdempotencyStore(redis, idempotency_ttl_s)

    async def publish(self, tenant_id: str, submission: Submission, admit: Admit | None = None) -> Accepted:
        """One request; raises :class:`IdempotencyInFlight` or :class:`IdempotencyMismatch` itself."""
        try:
            (accepted,) = await self.publish_many(tenant_id, [submission], admit)
        except IdempotencyRejected as exc:
            raise exc.errors[0] from None
        return accepted

    async def publish_many(
        self, tenant_id: str, submissions: Sequence[Submission], admit: Admit | None = None
    ) -> list[Accepted]:
        """All or nothing: every request is accepted (or replayed), or none is produced."""
        results: list[Accepted | None] = [None] * len(submissions)
        claims, owner = await self._reserve(tenant_id, submissions, results)
        fresh = [i for i, r in enumerate(results) if r is None and owner.get(i, i) == i]
        # Ids are fixed before the write (a retake writes again under the id of its unsure attempt), so
        # a write that fails half way can be retried under the same ids.
        todo = [self._with_id(tenant_id, submissions[i], claims.get(i)) for i in fresh]
        try:
            lanes = [await self.lane(tenant_id, submissions[i].request, index=i) for i in fresh]
            if fresh and admit is not None:
                await admit(len(fresh), "transactional" if "transactional" in lanes else "bulk")
        except BaseException:
            await self.idempotency.release(list(claims.values()))
            raise
        try:
            produced = await self._produce(tenant_id, todo, lanes)
        except RecordTooLarge as exc:  # refused before anything was written
            await self.idempotency.release(list(claims.values()))
            raise RecordTooLarge({fresh[i]: size for i, size in exc.sizes.items()}) from None
        except BaseException:  # some records may be in Kafka: keep each key with the id it was written under
            attempted = {
                i: Accepted(sub.notification_id or "", lane)
                for i, sub, lane in zip(fresh, todo, lanes, strict=True)
            }
            await self.idempotency.unsure(
                [(c, attempted[i].body()) for i, c in claims.items() if i in attempted]
            )
            await self.idempotency.release([c for i, c in claims.items() if i not in attempted])
            raise
        for i, accepted in zip(fresh, produced, strict=True):
            results[i] = accepted
        for i, first in owner.items():  # a key repeated within the call: the first item's result
            if first != i and (r := results[first]) is not None:
                results[i] = replace(r, replayed=True)
        done = [r for r in results if r is not None]
        assert len(done) == len(results)
        await self.idempotency.complete([(claim, done[i].body()) for i, claim in claims.items()])
        return done

    def _with_id(self, tenant_id: str, submission: Submission, claim: Claim | None) -> Submission:
        if submission.notification_id is not None:
            return submission
        if claim is not None and claim.retake is not None:
            return replace(submission, notification_id=str(claim.retake["id"]))
        return replace(submission, notification_id=self.ids.new(tenant_id))

    async def _reserve(
        self, tenant_id: str, submissions: Sequence[Submission], results: list[Accepted | None]
    ) -> tuple[dict[int, Claim], dict[int, int]]:
        """Reserve every key; fill ``results`` with replays. Returns the claims by item and, for items
        with a key, the index of the key's first item in this call. A key's reference request is the
        one that already holds it, else its first item here: an item unlike it is a mismatch."""
        fps: dict[int, str] = {}
        members: dict[str, list[int]] = {}
        for i, s in enumerate(submissions):
            if s.idempotency_key is not None:
                fps[i] = fingerprint(s.request)
                members.setdefault(s.idempotency_key, []).append(i)
        found = await self.idempotency.reserve(
            [(self.keys.idempotency(tenant_id, key), fps[idx[0]]) for key, idx in members.items()]
        )
        claims: dict[int, Claim] = {}
        errors: list[IdempotencyError] = []
        for (key, idx), held in zip(members.items(), found, strict=True):
            first = idx[0]
            if isinstance(held, Claim):
                claims[first] = held
                reference = held.fp
            else:
                reference = str(held.get("fp"))
            errors += [IdempotencyMismatch(key, i) for i in idx if fps[i] != reference]
            if isinstance(held, dict) and fps[first] == reference:
                if held.get("state") == "done":
                    results[first] = Accepted(held["result"]["id"], held["result"]["lane"], replayed=True)
                else:
                    errors.append(IdempotencyInFlight(key, first))
        if errors:
            await self.idempotency.release(list(claims.values()))
            raise IdempotencyRejected(sorted(errors, key=lambda e: e.index))
        return claims, {i: idx[0] for idx in members.values() for i in idx}

    async def lane(self, tenant_id: str, n: NotificationIn, *, index: int = 0) -> Lane:
        """The transactional lane carries the ``transactional`` category and the categories the tenant
        lists in ``transactional_categories``; every other category goes bulk. An explicit
        ``lane: transactional`` for another category raises :class:`LaneNotAllowed`, so no tenant can put
        marketing in front of booking confirmations. The category is the request's, else the
        template's, else ``transactional``."""
        category = await self._category(tenant_id, n)
        tenant = await self.tenant_cache.get_or_load(tenant_id, lambda: self.store.get_tenant(tenant_id))
        allowed = is_transactional(category, tenant)
        if n.lane == "transactional" and not allowed:
            raise LaneNotAllowed(category, index)
        if n.lane:
            return n.lane
        return "transactional" if allowed else "bulk"

    async def _category(self, tenant_id: str, n: NotificationIn) -> str:
        category = n.category
        if category is None and n.template_id is not None:
            template_id = n.template_id

            async def load() -> str:
                template = await self.store.get_template(tenant_id, template_id)
                return template.category if template else "transactional"

            category = await self.category_cache.get_or_load(f"{tenant_id}\x1f{template_id}", load)
        return category or "transactional"

    async def _produce(
        self, tenant_id: str, submissions: Sequence[Submission], lanes: Sequence[Lane]
    ) -> list[Accepted]:
        """Write every request and wait until Kafka acknowledged all of them (acks=all)."""
        if not submissions:
            return []
        now = time.time()
        per_topic: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)
        accepted: list[Accepted] = []
        too_large: dict[int, int] = {}
        for i, (s, lane) in enumerate(zip(submissions, lanes, strict=True)):
            n = s.request
            # Already validated as NotificationIn: construct without validating a second time.
            req = NotificationRequest.model_construct(
                id=s.notification_id or self.ids.new(tenant_id),
                tenant_id=tenant_id,
                lane=lane,
                accepted_at=now,
                to=n.to,  # type: ignore[arg-type]  # serialises to the same JSON as a WireRecipient
                template_id=n.template_id,
                content=n.content,
                channels=n.channels,
                routing=n.routing,
                data=n.data,
                category=n.category,
                locale=n.locale,
                expires_at=n.expires_at.timestamp() if n.expires_at else None,
                send_at=n.send_at.timestamp() if n.send_at else None,
                cancellation_key=n.cancellation_key,
                origin=s.origin,
            )
            key, value = (
                partition_key(tenant_id, _recipient(n.to, req.id)),
                req.model_dump_json(exclude_none=True).encode(),
            )
            if (
                len(key) + len(value) > MAX_RECORD_BYTES - 512
                and (size := record_size(key, value)) > MAX_RECORD_BYTES
            ):
                too_large[i] = size
            per_topic[self.topics.requests(lane)].append((key, value))
            accepted.append(Accepted(req.id, lane))
        if too_large:
            raise RecordTooLarge(too_large)
        try:
            if len(accepted) == 1:
                ((topic, ((key, value),)),) = per_topic.items()
                await self.producer.send_and_wait(topic, value, key=key)
            else:
                await asyncio.gather(*(produce_many(self.producer, t, recs) for t, recs in per_topic.items()))
        except SIZE_ERRORS as exc:  # the broker's own limit is lower than ours
            raise RecordTooLarge({}) from exc
        except KafkaError as exc:
            raise QueueUnavailable(f"the queue did not acknowledge the write ({type(exc).__name__})") from exc
        for a in accepted:
            metrics.NOTIFICATIONS_ACCEPTED.labels(a.lane).inc()
        return accepted


async def republish(producer: AIOKafkaProducer, topics: Topics, request: NotificationRequest) -> None:
    """Produce an already accepted request again, under its own id, onto its lane's requests topic
    (acks=all), keyed like the first time: routing ``first`` falling back to the next channel. Doing it
    twice is harmless: the router gives the same delivery ids, which the senders' ledger sends once."""
    value = request.model_dump_json(exclude_none=True).encode()
    key = partition_key(request.tenant_id, _recipient(request.to, request.id))
    await producer.send_and_wait(topics.requests(request.lane), value, key=key)


def _recipient(to: Any, notification_id: str) -> str:
    """What a request record is keyed by after the tenant: its contact, else its address, else its id."""
    return str(to.contact_id or to.email or to.phone or to.push_token or notification_id)
