"""One webhook delivery attempt, and what follows from its outcome.

Contract, per record of ``<prefix>.webhooks``:

- endpoint gone, disabled or no longer subscribed to the type → dropped (nothing to deliver to);
- endpoint paused → dead-lettered at once (reason ``endpoint paused``), replayable once resumed;
- otherwise one signed POST (no redirects followed, ``webhook_timeout_s``); a 2xx is success and ends
  the endpoint's failure streak;
- any other answer, a timeout, a connection error or a target that now resolves to a refused address
  is a failure: it counts towards the pause rule (herald_common.webhooks.store) and the delivery is
  put back for a later attempt through the scheduler's delayed queue
  (herald_common.delayed), after :func:`herald_common.backoff.backoff` (base
  ``webhook_retry_base_delay_s``, doubling, capped at ``webhook_retry_max_delay_s``, never sooner
  than a ``Retry-After`` the endpoint sent): about 5 s, 10 s, 20 s … 2.8 h, 5.7 h, 10 h, 10 h …;
- a failure at or after ``webhook_retry_for_s`` since the first attempt, or one that paused the
  endpoint, gives up: the delivery goes to ``<prefix>.deadletter.webhooks`` with its attempt count
  reset, so ``herald dlq replay --service webhooks`` starts it afresh.

At least once: the retry (or dead letter) is durable before the record's offset is committed; a crash
in between repeats the attempt with the same ``webhook-id``.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import aiohttp
import pydantic
import structlog
from aiokafka.structs import ConsumerRecord

from herald_common import metrics
from herald_common.backoff import backoff
from herald_common.delayed import DelayedRecord, DelayQueue
from herald_common.kafka import DLQ_ATTEMPTS, DLQ_DELIVERY_ID, DeadLetters, PoisonRecord
from herald_common.webhooks.model import Endpoint
from herald_common.webhooks.store import WebhookStore
from herald_common.webhooks.targets import TargetRefused, check_target
from herald_common.webhooks.wire import WebhookDelivery, signed_headers
from herald_webhooks.settings import WebhooksSettings

log = structlog.get_logger()

USER_AGENT = "Herald-Webhooks/1"


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Deliverer:
    def __init__(
        self,
        settings: WebhooksSettings,
        store: WebhookStore,
        http: aiohttp.ClientSession,
        delayed: DelayQueue,
        dead_letters: DeadLetters,
        topic: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.http = http
        self.delayed = delayed
        self.dead_letters = dead_letters
        self.topic = topic
        self.allow_hosts = settings.allowed_hosts()

    async def handle(self, rec: ConsumerRecord) -> None:
        try:
            d = WebhookDelivery.model_validate_json(rec.value)
        except (pydantic.ValidationError, ValueError) as exc:
            raise PoisonRecord(f"unreadable webhook delivery: {exc}") from exc
        bound = log.bind(tenant=d.tenant_id, webhook=d.endpoint_id, webhook_id=d.webhook_id)
        endpoint = await self.store.get(d.tenant_id, d.endpoint_id)
        if endpoint is None or not endpoint.wants(d.event_type):
            metrics.WEBHOOK_DELIVERIES.labels("dropped").inc()
            bound.info("webhook delivery dropped: endpoint gone, disabled or unsubscribed")
            return
        if await self.store.is_paused(d.tenant_id, d.endpoint_id):
            await self._give_up(rec, d, "endpoint paused")
            return
        now = time.time()
        if d.first_attempt_at is None:
            d = d.model_copy(update={"first_attempt_at": now})
        error, floor_s = await self.attempt(endpoint, d)
        if error is None:
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
            await self.store.record_success(d.tenant_id, d.endpoint_id)
            return
        metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
        s = self.settings
        paused = await self.store.record_failure(
            d.tenant_id,
            d.endpoint_id,
            error,
            min_failures=s.webhook_pause_min_failures,
            after_s=s.webhook_pause_after_s,
        )
        if paused:
            bound.warning("webhook endpoint paused: every attempt has been failing", error=error)
        assert d.first_attempt_at is not None
        if paused or time.time() - d.first_attempt_at >= s.webhook_retry_for_s:
            await self._give_up(rec, d, f"gave up after {d.attempt} attempt(s): {error}")
            return
        delay = backoff(
            d.attempt,
            base_s=s.webhook_retry_base_delay_s,
            max_s=s.webhook_retry_max_delay_s,
            floor_s=min(floor_s, s.webhook_retry_max_delay_s) if floor_s else None,
        )
        retry = d.model_copy(update={"attempt": d.attempt + 1})
        record = DelayedRecord(self.topic, retry.model_dump_json().encode(), key=rec.key)
        await self.delayed.put(f"webhook:{d.webhook_id}", record, time.time() + delay)
        bound.info(
            "webhook attempt failed; retrying", attempt=d.attempt, delay_s=round(delay, 2), error=error
        )

    async def attempt(self, endpoint: Endpoint, d: WebhookDelivery) -> tuple[str | None, float | None]:
        """POST once; (None, None) on a 2xx, else (what went wrong, the Retry-After it asked for)."""
        try:
            await check_target(endpoint.url, self.allow_hosts, self.settings.webhook_allow_private)
        except TargetRefused as exc:
            return f"target refused: {exc}", None
        now = time.time()
        headers = signed_headers(d.webhook_id, d.body, endpoint.signing_secrets(), now)
        headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
        started = time.perf_counter()
        try:
            async with self.http.post(
                endpoint.url,
                data=d.body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s),
            ) as resp:
                if 200 <= resp.status < 300:
                    return None, None
                return f"HTTP {resp.status}", retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError:
            return f"no answer within {self.settings.webhook_timeout_s:g} s", None
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:300], None
        finally:
            metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)

    async def _give_up(self, rec: ConsumerRecord, d: WebhookDelivery, reason: str) -> None:
        fresh = d.model_copy(update={"attempt": 1, "first_attempt_at": None})
        await self.dead_letters.write(
            fresh.model_dump_json().encode(),
            rec.key,
            reason=reason,
            cause="attempts_exhausted",
            source_topic=self.topic,
            headers=[(DLQ_DELIVERY_ID, d.webhook_id.encode()), (DLQ_ATTEMPTS, str(d.attempt).encode())],
        )
        metrics.WEBHOOK_DELIVERIES.labels("dead_lettered").inc()
        log.warning(
            "webhook delivery dead-lettered", tenant=d.tenant_id, webhook=d.endpoint_id, reason=reason
        )
