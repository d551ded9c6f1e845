"""Admin endpoints: create tenants, issue and revoke their API keys (a key is shown once)."""

from __future__ import annotations

from aiohttp import web
from aiokafka.errors import KafkaError

from herald_common.kafka import create_topics
from herald_common.kafka.security import client_options
from herald_common.schemas import ApiKeyIn, TenantIn, TenantPatch
from herald_common.topics import DEFAULT_PARTITIONS
from herald_gateway.context import KEY_CACHE, SETTINGS, STORE, TENANT_CACHE, TOPICS
from herald_gateway.problems import ProblemError, json_response, parse_body


async def _events_topic(request: web.Request, tenant_id: str, outcome: str = "nothing was changed") -> None:
    """Create the tenant's own events topic (``events_topic: true``) before saying so; the
    transactional routers find it by their pattern subscription."""
    settings = request.app[SETTINGS]
    try:
        await create_topics(
            settings.kafka_bootstrap,
            [request.app[TOPICS].tenant_events(tenant_id)],
            DEFAULT_PARTITIONS,
            client=client_options(settings),
        )
    except (KafkaError, OSError) as exc:
        raise ProblemError(
            503,
            f"the tenant's events topic could not be created; {outcome}",
            headers={"Retry-After": "1"},
        ) from exc


async def create_tenant(request: web.Request) -> web.Response:
    body = await parse_body(request, TenantIn, request.app[SETTINGS].max_body_bytes)
    if body.events_topic and body.id is not None:
        await _events_topic(request, body.id)
    tenant = await request.app[STORE].create_tenant(body)
    if tenant is None:
        raise ProblemError(409, f"tenant {body.id} already exists")
    if tenant.events_topic and body.id is None:  # its id was only chosen now
        await _events_topic(request, tenant.id, "the tenant was created: PATCH events_topic to retry")
    return json_response(tenant.model_dump(mode="json"), status=201)


async def get_tenant(request: web.Request) -> web.Response:
    tenant = await request.app[STORE].get_tenant(request.match_info["tenant_id"])
    if tenant is None:
        raise ProblemError(404, "no such tenant")
    return json_response(tenant.model_dump(mode="json"))


async def update_tenant(request: web.Request) -> web.Response:
    patch = await parse_body(request, TenantPatch, request.app[SETTINGS].max_body_bytes)
    if patch.events_topic:
        if await request.app[STORE].get_tenant(request.match_info["tenant_id"]) is None:
            raise ProblemError(404, "no such tenant")
        await _events_topic(request, request.match_info["tenant_id"])
    tenant = await request.app[STORE].update_tenant(request.match_info["tenant_id"], patch)
    if tenant is None:
        raise ProblemError(404, "no such tenant")
    request.app[TENANT_CACHE].drop(tenant.id)  # other gateway replicas follow within the cache time
    return json_response(tenant.model_dump(mode="json"))


async def issue_key(request: web.Request) -> web.Response:
    tenant_id = request.match_info["tenant_id"]
    store = request.app[STORE]
    if await store.get_tenant(tenant_id) is None:
        raise ProblemError(404, "no such tenant")
    body = ApiKeyIn()
    if request.body_exists:
        body = await parse_body(request, ApiKeyIn, request.app[SETTINGS].max_body_bytes)
    key_id, api_key = await store.issue_api_key(tenant_id, body.name)
    return json_response(
        {"key_id": key_id, "api_key": api_key, "tenant_id": tenant_id, "name": body.name}, status=201
    )


async def revoke_key(request: web.Request) -> web.Response:
    tenant_id, key_id = request.match_info["tenant_id"], request.match_info["key_id"]
    if not await request.app[STORE].revoke_api_key(tenant_id, key_id):
        raise ProblemError(404, "no such API key")
    # This process forgets it at once; other gateway replicas within HERALD_API_KEY_CACHE_S.
    request.app[KEY_CACHE].clear()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/v1/tenants", create_tenant)
    app.router.add_get("/admin/v1/tenants/{tenant_id}", get_tenant)
    app.router.add_patch("/admin/v1/tenants/{tenant_id}", update_tenant)
    app.router.add_post("/admin/v1/tenants/{tenant_id}/api-keys", issue_key)
    app.router.add_delete("/admin/v1/tenants/{tenant_id}/api-keys/{key_id}", revoke_key)
