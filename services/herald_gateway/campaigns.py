"""Campaigns API: create, list, read (live counts and ETA), change the rate, start, pause, resume,
cancel, page through recipients by outcome, and resend to those who failed. The audience upload is
:mod:`herald_gateway.campaign_audience`; the lifecycle is documented in :mod:`herald_common.campaigns`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from herald_common.campaigns.model import OUTCOMES, CampaignIn, CampaignPatch
from herald_common.campaigns.records import Records
from herald_common.campaigns.store import CampaignStore, Snapshot
from herald_common.campaigns.view import describe
from herald_common.cancel import announce, cancel_by_key, cancelled_events
from herald_common.conditions import ExpressionError, compile_expression
from herald_gateway.context import KEYS, PRODUCER, REDIS, SETTINGS, STORE, TENANT_ID, TOPICS
from herald_gateway.problems import ProblemError, json_response, parse_body

CAMPAIGNS = web.AppKey("campaigns", CampaignStore)
RECORDS = web.AppKey("campaign_records", Records)
CAMPAIGN = r"/v1/campaigns/{campaign_id:c_[0-9a-f]{16}}"
LISTED = tuple(o for o in OUTCOMES if o != "queued")  # outcomes with an index to page through
ACTIVE = ("scheduled", "running", "paused")


async def _clients(app: web.Application) -> AsyncIterator[None]:
    app[CAMPAIGNS] = CampaignStore(app[REDIS], app[KEYS])
    app[RECORDS] = Records(app[REDIS], app[KEYS])
    yield


def _limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ProblemError(
            422, "limit must be an integer from 1 to 1000", [{"field": "limit", "message": "1 to 1000"}]
        )
    return int(raw)


async def _load(request: web.Request) -> Snapshot:
    found = await request.app[CAMPAIGNS].get(request[TENANT_ID], request.match_info["campaign_id"])
    if found is None:
        raise ProblemError(404, "no such campaign")
    return found


async def view(app: web.Application, snap: Snapshot) -> dict[str, Any]:
    return await describe(app[RECORDS], snap)


async def create(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT_ID]
    body = await parse_body(request, CampaignIn, app[SETTINGS].max_body_bytes)
    if body.segment is not None:
        try:
            expression = compile_expression(body.segment)
        except ExpressionError as exc:
            raise ProblemError(
                422, "the segment does not compile", [{"field": "segment", "message": str(exc)}]
            ) from None
        if "event" in expression.bounds.paths:
            raise ProblemError(
                422, "a segment sees only contact", [{"field": "segment", "message": "use contact"}]
            )
    if await app[STORE].get_template(tenant_id, body.template_id) is None:
        raise ProblemError(422, "no such template", [{"field": "template_id", "message": "not found"}])
    snap = await app[CAMPAIGNS].create(tenant_id, body)
    headers = {"Location": f"/v1/campaigns/{snap.campaign.id}"}
    return json_response(await view(app, snap), status=201, headers=headers)


async def list_campaigns(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT_ID]
    limit = _limit(request, 50)
    cursor = request.query.get("cursor")
    before: float | None = None
    if cursor is not None:
        try:
            before = float(cursor)
        except ValueError:
            raise ProblemError(
                422, "cursor is not one this API gave", [{"field": "cursor", "message": "invalid"}]
            ) from None
    found = await app[CAMPAIGNS].ids(tenant_id, before, limit)
    items = []
    for campaign_id, _ in found:
        snap = await app[CAMPAIGNS].get(tenant_id, campaign_id)
        if snap is not None:
            items.append(await view(app, snap))
    next_cursor = repr(found[-1][1]) if len(found) == limit else None
    return json_response({"campaigns": items, "next_cursor": next_cursor})


async def get(request: web.Request) -> web.Response:
    return json_response(await view(request.app, await _load(request)))


async def patch(request: web.Request) -> web.Response:
    app = request.app
    body = await parse_body(request, CampaignPatch, app[SETTINGS].max_body_bytes)
    snap = await _load(request)
    ok, state = await app[CAMPAIGNS].set_rate(snap.campaign.tenant_id, snap.campaign.id, body.rate_per_s)
    if not ok:
        raise ProblemError(409, f"the campaign is {state}; its rate can no longer change")
    return json_response(await view(app, await _load(request)))


async def _act(request: web.Request, allowed: tuple[str, ...], to: str, **options: Any) -> web.Response:
    snap = await _load(request)
    c = snap.campaign
    ok, state = await request.app[CAMPAIGNS].transition(c.tenant_id, c.id, allowed, to, **options)
    if not ok:
        raise ProblemError(409, f"the campaign is {state}; it cannot become {to}")
    return json_response(await view(request.app, await _load(request)), status=202)


def _due(snap: Snapshot, now: float) -> tuple[str, float]:
    send_at = snap.campaign.send_at
    return ("scheduled", send_at) if send_at is not None and send_at > now else ("running", now)


async def start(request: web.Request) -> web.Response:
    snap = await _load(request)
    if snap.campaign.segment is None and not snap.number("audience"):
        raise ProblemError(409, "upload an audience or give the campaign a segment before starting it")
    if snap.campaign.segment is not None:  # saved under older bounds, perhaps: check it under today's
        try:
            compile_expression(snap.campaign.segment)
        except ExpressionError as exc:
            raise ProblemError(
                409,
                "the campaign's segment is refused by the current expression bounds; "
                "create the campaign again with a segment that passes them",
                [{"field": "segment", "message": str(exc)}],
            ) from None
    now = time.time()
    state, due = _due(snap, now)
    return await _act(request, ("draft",), state, active=due, started_at=repr(now))


async def pause(request: web.Request) -> web.Response:
    return await _act(request, ("scheduled", "running"), "paused", active=None, paused="1")


async def resume(request: web.Request) -> web.Response:
    state, due = _due(await _load(request), time.time())
    return await _act(request, ("paused",), state, active=due, paused="0")


async def cancel(request: web.Request) -> web.Response:
    app, snap, now = request.app, await _load(request), time.time()
    c = snap.campaign
    started = snap.state != "draft"
    # A started campaign stays active until a campaigns replica has recorded its remaining recipients.
    response = await _act(
        request,
        ("draft", *ACTIVE),
        "cancelled",
        active=now if started else None,
        paused="0",
        ended_at=repr(now),
    )
    if started:
        waiting = await cancel_by_key(app[REDIS], app[KEYS], c.tenant_id, c.cancellation_key(), now)
        await announce(
            app[PRODUCER], app[TOPICS], cancelled_events(c.tenant_id, waiting, now, "campaign cancelled")
        )
    return response


async def recipients(request: web.Request) -> web.Response:
    snap = await _load(request)
    status = request.query.get("status", "")
    if status not in LISTED:
        message = f"one of {', '.join(LISTED)}"
        raise ProblemError(422, f"status must be {message}", [{"field": "status", "message": message}])
    limit = _limit(request)
    after = request.query.get("cursor", "")
    c = snap.campaign
    page = await request.app[RECORDS].page(c.tenant_id, c.id, status, after, limit)
    items = [{"contact_id": cid, "status": status, **({"reason": r} if r else {})} for cid, r in page]
    next_cursor = page[-1][0] if len(page) == limit else None
    return json_response({"recipients": items, "next_cursor": next_cursor})


async def resend_failed(request: web.Request) -> web.Response:
    """A draft follow-up campaign like this one whose audience is this one's failed recipients."""
    app, snap = request.app, await _load(request)
    c = snap.campaign
    body = CampaignIn.model_construct(
        name=f"{c.name or c.id}: resend to failed",
        template_id=c.template_id,
        channels=c.channels,
        category=c.category,
        data=c.data,
        rate_per_s=snap.rate,
        send_at=None,
        local_time=c.local_time,
        segment=None,
    )
    follow = await app[CAMPAIGNS].create(c.tenant_id, body, follow_up_of=c.id)
    after = ""
    while page := await app[RECORDS].page(c.tenant_id, c.id, "failed", after, 1000):
        await app[CAMPAIGNS].append_audience(c.tenant_id, follow.campaign.id, [cid for cid, _ in page])
        after = page[-1][0]
    snap_follow = await app[CAMPAIGNS].get(c.tenant_id, follow.campaign.id)
    assert snap_follow is not None
    headers = {"Location": f"/v1/campaigns/{follow.campaign.id}"}
    return json_response(await view(app, snap_follow), status=201, headers=headers)


def add_routes(app: web.Application) -> None:
    from herald_gateway import campaign_audience

    app.cleanup_ctx.append(_clients)
    app.router.add_post("/v1/campaigns", create)
    app.router.add_get("/v1/campaigns", list_campaigns)
    app.router.add_get(CAMPAIGN, get)
    app.router.add_patch(CAMPAIGN, patch)
    for action, handler in (
        ("start", start),
        ("pause", pause),
        ("resume", resume),
        ("cancel", cancel),
        ("resend-failed", resend_failed),
    ):
        app.router.add_post(f"{CAMPAIGN}:{action}", handler)
    app.router.add_get(CAMPAIGN + "/recipients", recipients)
    app.router.add_post(CAMPAIGN + "/audience", campaign_audience.upload)
