"""PUT/GET/DELETE /v1/triggers/{event_type}: what an event type sends. Every rule's CEL expressions
(``condition``, ``cancellation_key``) are compiled before the trigger is saved: one that does not
compile is a 422 naming the rule, the field and the line and column of the error."""

from __future__ import annotations

from aiohttp import web

from herald_common.conditions import ExpressionError, compile_expression
from herald_common.events import TriggerIn
from herald_gateway.context import SETTINGS, TENANT_ID
from herald_gateway.events import TRIGGERS
from herald_gateway.problems import ProblemError, json_response, parse_body

EVENT_TYPE = r"{event_type:[a-z][a-z0-9_\-]{0,63}(?:\.[a-z0-9_\-]{1,64}){0,4}}"


def expression_problems(body: TriggerIn) -> list[dict[str, str]]:
    errors = []
    for i, rule in enumerate(body.rules):
        for name in ("condition", "cancellation_key", "cancels"):
            source = getattr(rule, name)
            if source is None:
                continue
            try:
                compile_expression(source)
            except ExpressionError as exc:
                errors.append({"field": f"rules.{i}.{name}", "message": str(exc)})
    return errors


async def put_trigger(request: web.Request) -> web.Response:
    body = await parse_body(request, TriggerIn, request.app[SETTINGS].max_body_bytes)
    errors = expression_problems(body)
    if errors:
        raise ProblemError(422, "a trigger expression does not compile", errors=errors)
    trigger = await request.app[TRIGGERS].put(request[TENANT_ID], request.match_info["event_type"], body)
    return json_response(trigger.model_dump(mode="json", exclude_none=True))


async def get_trigger(request: web.Request) -> web.Response:
    trigger = await request.app[TRIGGERS].get(request[TENANT_ID], request.match_info["event_type"])
    if trigger is None:
        raise ProblemError(404, "no trigger for this event type")
    return json_response(trigger.model_dump(mode="json", exclude_none=True))


async def delete_trigger(request: web.Request) -> web.Response:
    if not await request.app[TRIGGERS].delete(request[TENANT_ID], request.match_info["event_type"]):
        raise ProblemError(404, "no trigger for this event type")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    path = "/v1/triggers/" + EVENT_TYPE
    app.router.add_put(path, put_trigger)
    app.router.add_get(path, get_trigger)
    app.router.add_delete(path, delete_trigger)
