"""One-click unsubscribe (RFC 8058) and the hosted preferences page, on the gateway without an API key:
the token in the URL (herald_common.unsubscribe) is the credential, and a token that does not open is a
404 with no detail.

- ``POST /u/{token}`` with the body ``List-Unsubscribe=One-Click`` (form-encoded or multipart, as mail
  clients send it): opts the member out of the token's category — ``preferences.categories[cat] =
  false`` on the contact, or, for an email sent to an inline address, the address on the tenant's
  suppression list. Idempotent: 200 every time. Any other body is 400.
- ``GET /u/{token}``: a small page to confirm that, or (for a contact) to choose which marketing
  categories to keep: the token's category, ``marketing``, the tenant's capped categories and any the
  contact already has a preference for (never transactional ones).
- ``POST /u/{token}/preferences`` (form: ``category`` per kept category, ``all_marketing=off``): sets
  each listed category on or off, then 303 back to the page.

These routes are outside the tenant API document (``/v1/openapi.json``): they take forms from mail
clients and browsers, not JSON from tenants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from herald_common.ids import shared_secret
from herald_common.policy import is_transactional
from herald_common.schemas import Contact, Tenant
from herald_common.unsubscribe import ONE_CLICK, PATH, Claim, Tokens, link_key
from herald_gateway.context import KEYS, REDIS, SETTINGS, STORE
from herald_gateway.unsubscribe_page import ALL_MARKETING, View, not_found, render

log = structlog.get_logger()
TOKENS = web.AppKey("unsubscribe_tokens", Tokens)
MAX_FORM_BYTES = 16 * 1024
_KEY, _VALUE = ONE_CLICK.split("=")


async def _tokens(app: web.Application) -> AsyncIterator[None]:
    """After the gateway's clients: the id secret in Redis is the default key's root."""
    settings = app[SETTINGS]
    secret = settings.id_secret_bytes() or await shared_secret(app[REDIS], app[KEYS].id_secret())
    own = settings.unsubscribe_secret.get_secret_value() if settings.unsubscribe_secret else None
    app[TOKENS] = Tokens(link_key(own, secret))
    yield


def _claim(request: web.Request) -> Claim | None:
    return request.app[TOKENS].open(request.match_info["token"])


async def _form(request: web.Request) -> dict[str, list[str]] | None:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=request.content_length)
    form = await request.post()
    return {k: [str(v) for v in form.getall(k)] for k in form}


def _marketing(tenant: Tenant | None, names: set[str]) -> set[str]:
    return {name for name in names if not is_transactional(name, tenant)}


def _choices(claim: Claim, tenant: Tenant | None, contact: Contact) -> dict[str, bool]:
    """Every category the page offers, with whether the contact receives it now."""
    prefs = contact.preferences.categories
    names = {claim.category, "marketing", *prefs, *((tenant.frequency_caps or {}) if tenant else {})}
    return {name: prefs.get(name) is not False for name in _marketing(tenant, names)}


async def _view(request: web.Request, claim: Claim, notice: str | None = None) -> web.Response:
    store = request.app[STORE]
    tenant = await store.get_tenant(claim.tenant_id)
    if tenant is None:
        return not_found()
    preferences = None
    if claim.kind == "contact":
        contact = await store.get_contact(claim.tenant_id, claim.subject)
        if contact is not None:
            preferences = _choices(claim, tenant, contact)
    sender = tenant.email_from_name or tenant.name
    token = request.match_info["token"]
    return render(View(token, sender, claim.category, preferences, notice))


async def _opt_out(request: web.Request, claim: Claim, categories: dict[str, bool]) -> None:
    store = request.app[STORE]
    if claim.kind == "contact":
        await store.set_category_preferences(claim.tenant_id, claim.subject, categories)
    elif not all(categories.values()):
        await store.suppress(claim.tenant_id, claim.subject, reason="unsubscribed", source="unsubscribe_link")
    log.info(
        "unsubscribe",
        tenant=claim.tenant_id,
        kind=claim.kind,
        off=sorted(c for c, on in categories.items() if not on),
    )


async def page(request: web.Request) -> web.Response:
    claim = _claim(request)
    if claim is None:
        return not_found()
    saved = "Your preferences are saved." if request.query.get("saved") == "1" else None
    return await _view(request, claim, saved)


async def one_click(request: web.Request) -> web.Response:
    claim = _claim(request)
    if claim is None:
        return not_found()
    form = await _form(request)
    if form is None or form.get(_KEY) != [_VALUE]:
        raise web.HTTPBadRequest(reason=f"the body must be {ONE_CLICK}")
    await _opt_out(request, claim, {claim.category: False})
    return await _view(request, claim, f"You are unsubscribed from {claim.category} email.")


async def preferences(request: web.Request) -> web.Response:
    claim = _claim(request)
    if claim is None or claim.kind != "contact":
        return not_found()
    form = await _form(request)
    if form is None:
        raise web.HTTPBadRequest(reason="send the preferences form")
    store = request.app[STORE]
    tenant = await store.get_tenant(claim.tenant_id)
    contact = await store.get_contact(claim.tenant_id, claim.subject)
    if tenant is None or contact is None:
        return not_found()
    everything_off = form.get(ALL_MARKETING) == ["off"]
    kept = set(form.get("category", []))
    choices = _choices(claim, tenant, contact)
    await _opt_out(request, claim, {name: name in kept and not everything_off for name in choices})
    raise web.HTTPSeeOther(f"../{request.match_info['token']}?saved=1")


def add_to(app: web.Application) -> None:
    """Register after the gateway's clients (the key needs Redis)."""
    app.cleanup_ctx.append(_tokens)
    app.router.add_get(PATH + "{token}", page)
    app.router.add_post(PATH + "{token}", one_click)
    app.router.add_post(PATH + "{token}/preferences", preferences)
