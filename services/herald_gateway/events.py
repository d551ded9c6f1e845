"""POST /v1/events (and :batch): loyalty events in. Each event is validated, its inline contact fields
upserted, given a signed id, and written to ``<prefix>.events`` (acks=all, keyed by tenant and contact);
202 once acknowledged, with the event id and the ids of the notifications its trigger's rules may
publish (one per rule, derived from the event id and the rule's index; ``GET /v1/events/{id}`` says
which were sent and why the others were not). Idempotency keys work as for notifications: a replay
answers the first result, another body is 422, in flight is 409; a batch is all or nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from herald_common.events import (
    EventBatch,
    EventIn,
    EventRecord,
    event_idempotency_name,
    rule_notification_id,
)
from herald_common.ids import EventIds, partition_key
from herald_common.intake import fingerprint
from herald_common.intake.idempotency import Claim, IdempotencyStore
from herald_common.kafka import produce_many
from herald_common.triggerstore import TriggerStore
from herald_gateway import quota
from herald_gateway.context import IDS, KEYS, PRODUCER, REDIS, SETTINGS, TENANT_ID, TOPICS
from herald_gateway.problems import ProblemError, json_response, parse_json, read_body

EVENT_IDS = web.AppKey("event_ids", EventIds)
TRIGGERS = web.AppKey("triggers", TriggerStore)
EVENT_IDEMPOTENCY = web.AppKey("event_idempotency", IdempotencyStore)


async def _clients(app: web.Application) -> AsyncIterator[None]:
    app[EVENT_IDS] = EventIds.like(app[IDS])
    app[TRIGGERS] = TriggerStore(app[REDIS], app[KEYS])
    app[EVENT_IDEMPOTENCY] = IdempotencyStore(app[REDIS], app[SETTINGS].idempotency_ttl_s)
    yield


def _idem_key(app: web.Application, tenant_id: str, key: str) -> str:
    return app[KEYS].idempotency(tenant_id, event_idempotency_name(key))


async def _reserve(
    app: web.Application, tenant_id: str, items: list[tuple[EventIn, str | None]], field: str
) -> tuple[dict[int, Claim], dict[int, Any]]:
    """Reserve every key: the claims by item, and the results to replay by item (a key used before with
    the same event, or repeated within this call). 409/422 with per-item errors otherwise."""
    members: dict[str, list[int]] = {}
    fps: dict[int, str] = {}
    for i, (event, key) in enumerate(items):
        if key is not None:
            fps[i] = fingerprint(event)
            members.setdefault(key, []).append(i)
    store = app[EVENT_IDEMPOTENCY]
    found = await store.reserve([(_idem_key(app, tenant_id, k), fps[idx[0]]) for k, idx in members.items()])
    claims: dict[int, Claim] = {}
    replays: dict[int, Any] = {}
    mismatch: list[int] = []
    inflight: list[int] = []
    for idx, held in zip(members.values(), found, strict=True):
        first = idx[0]
        if isinstance(held, Claim):
            claims[first], reference = held, held.fp
        else:
            reference = str(held.get("fp"))
        mismatch += [i for i in idx if fps[i] != reference]
        if isinstance(held, dict) and fps[first] == reference:
            if held.get("state") == "done":
                replays[first] = held["result"]
            else:
                inflight.append(first)
        replays.update({i: first for i in idx[1:] if fps[i] == reference})  # filled in after produce
    if mismatch or inflight:
        await store.release(list(claims.values()))
        status = 422 if mismatch else 409
        message = (
            "this idempotency key was used with a different event"
            if mismatch
            else "an event with this idempotency key is in flight; retry shortly"
        )
        errors = [{"field": field.format(i=i), "message": message} for i in sorted(mismatch or inflight)]
        raise ProblemError(status, f"{message}; nothing was accepted", errors=errors)
    return claims, replays


async def accept(
    request: web.Request, items: list[tuple[EventIn, str | None]], field: str
) -> list[dict[str, Any]]:
    """Accept the events (all or none); the result body of each, in order."""
    app, tenant_id = request.app, request[TENANT_ID]
    claims, replays = await _reserve(app, tenant_id, items, field)
    fresh = [i for i in range(len(items)) if i not in replays]
    results: list[dict[str, Any] | None] = [None] * len(items)
    try:
        if fresh:
            await quota.take(app, tenant_id, len(fresh), "transactional")
        inline = [(items[i][0].contact_id, c) for i in fresh if (c := items[i][0].contact) is not None]
        await app[TRIGGERS].upsert_contacts(tenant_id, inline)
        triggers = await app[TRIGGERS].get_many(tenant_id, sorted({items[i][0].type for i in fresh}))
        now, ids, records = time.time(), app[EVENT_IDS], []
        for i in fresh:
            event = items[i][0]
            record = EventRecord.accepted(event, ids.new(tenant_id), tenant_id, now)
            trigger = triggers.get(event.type)
            nids = [
                rule_notification_id(app[IDS], tenant_id, record.id, now, r)
                for r, rule in enumerate(trigger.rules if trigger else ())
                if rule.template_id is not None  # a rule that only cancels sends nothing
            ]
            results[i] = {"id": record.id, "status": "accepted", "notification_ids": nids}
            records.append((partition_key(tenant_id, event.contact_id), record.model_dump_json().encode()))
        topic = app[TOPICS].events
        try:
            if len(records) == 1:
                await app[PRODUCER].send_and_wait(topic, records[0][1], key=records[0][0])
            elif records:
                await produce_many(app[PRODUCER], topic, records)
        except KafkaError as exc:
            raise ProblemError(
                503,
                "the queue did not acknowledge the write; nothing was accepted, and retrying with the "
                "same idempotency key is safe",
                headers={"Retry-After": "1"},
            ) from exc
    except BaseException:
        await app[EVENT_IDEMPOTENCY].release(list(claims.values()))
        raise
    for i, replay in replays.items():
        first = results[replay] if isinstance(replay, int) else replay
        assert first is not None
        results[i] = {**first, "replayed": True}
    done = [r for r in results if r is not None]
    await app[EVENT_IDEMPOTENCY].complete([(claim, done[i]) for i, claim in claims.items()])
    return done


async def create(request: web.Request) -> web.Response:
    body = parse_json(EventIn, await read_body(request, request.app[SETTINGS].max_body_bytes))
    header = request.headers.get("Idempotency-Key")
    key = header or body.idempotency_key
    if key is not None and not 1 <= len(key) <= 255:
        raise ProblemError(400, "Idempotency-Key must be 1 to 255 characters")
    (result,) = await accept(request, [(body, key)], "Idempotency-Key" if header else "idempotency_key")
    headers = {"Location": f"/v1/events/{result['id']}"}
    if result.get("replayed"):
        headers["Idempotent-Replayed"] = "true"
    return web.Response(
        body=orjson.dumps(result), status=202, content_type="application/json", headers=headers
    )


async def create_batch(request: web.Request) -> web.Response:
    raw = await read_body(request, request.app[SETTINGS].max_body_bytes)
    body = parse_json(EventBatch, raw)
    results = await accept(
        request, [(e, e.idempotency_key) for e in body.events], "events[{i}].idempotency_key"
    )
    return json_response({"events": results}, status=202)


async def get(request: web.Request) -> web.Response:
    app, tenant_id, eid = request.app, request[TENANT_ID], request.match_info["event_id"]
    issued_at = app[EVENT_IDS].issued_at(eid, tenant_id)
    if issued_at is None:
        raise ProblemError(404, "no such event")
    outcome = await app[TRIGGERS].outcome(tenant_id, eid)
    if outcome is None:  # not processed yet (or its record has expired)
        return json_response({"id": eid, "status": "accepted", "accepted_at": issued_at, "decisions": []})
    return json_response(outcome.model_dump(mode="json", exclude_none=True))


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_clients)
    app.router.add_post("/v1/events", create)
    app.router.add_post("/v1/events:batch", create_batch)
    app.router.add_get(r"/v1/events/{event_id:e_[a-z0-9]{1,40}}", get)
