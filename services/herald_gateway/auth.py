"""Tenant authentication (API keys, stored hashed) and the admin token."""

from __future__ import annotations

import hmac

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from herald_gateway.context import KEY_CACHE, SETTINGS, STORE, TENANT_ID
from herald_gateway.problems import ProblemError

_PUBLIC = frozenset({"/healthz", "/readyz", "/v1/openapi.json"})
_RECEIPTS = "/v1/receipts/"
_UNSUBSCRIBE = "/u/"  # the token in the URL is the credential (herald_gateway.unsubscribe)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="herald"'}


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "send an Authorization: Bearer <api key> header", headers=_CHALLENGE)
    return token.strip()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if (
        path in _PUBLIC
        or path.startswith((_RECEIPTS, _UNSUBSCRIBE))
        or request.match_info.http_exception is not None
    ):
        return await handler(request)  # receipts authenticate by the provider's signature instead
    if path.startswith("/admin/"):
        token = _bearer(request)
        expected = request.app[SETTINGS].admin_token.get_secret_value()
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise ProblemError(401, "the admin token is not valid", headers=_CHALLENGE)
        return await handler(request)
    token = _bearer(request)
    cache = request.app[KEY_CACHE]
    record = cache.get(token)
    if record is None:
        record = await request.app[STORE].resolve_api_key(token)
        if record is None:
            raise ProblemError(401, "the API key is not valid or was revoked", headers=_CHALLENGE)
        cache.put(token, record)
    request[TENANT_ID] = record["tenant_id"]
    structlog.contextvars.bind_contextvars(tenant=record["tenant_id"])
    try:
        return await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("tenant")
