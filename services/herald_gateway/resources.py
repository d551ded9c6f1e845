"""Contacts and templates: the tenant's member profiles and per-channel content."""

from __future__ import annotations

import asyncio

from aiohttp import web

from herald_common.schemas import Contact, ContactBatch, ContactIn, PreviewIn, Template, TemplateIn
from herald_common.store import now
from herald_common.templating import (
    TemplateRenderError,
    check_template,
    render_channel_async,
    template_context,
)
from herald_gateway.context import SETTINGS, STORE, TENANT_ID
from herald_gateway.problems import M, ProblemError, json_response, parse_body

ID = r"{%s:[A-Za-z0-9][A-Za-z0-9._\-]{0,127}}"


async def _body(request: web.Request, model: type[M]) -> M:
    return await parse_body(request, model, request.app[SETTINGS].max_body_bytes)


# contacts -------------------------------------------------------------------------------------------
async def put_contact(request: web.Request) -> web.Response:
    body = await _body(request, ContactIn)
    contact = await request.app[STORE].put_contact(request[TENANT_ID], request.match_info["contact_id"], body)
    return json_response(contact.model_dump(mode="json"))


async def get_contact(request: web.Request) -> web.Response:
    contact = await request.app[STORE].get_contact(request[TENANT_ID], request.match_info["contact_id"])
    if contact is None:
        raise ProblemError(404, "no such contact")
    return json_response(contact.model_dump(mode="json"))


async def delete_contact(request: web.Request) -> web.Response:
    if not await request.app[STORE].delete_contact(request[TENANT_ID], request.match_info["contact_id"]):
        raise ProblemError(404, "no such contact")
    return web.Response(status=204)


async def batch_contacts(request: web.Request) -> web.Response:
    body: ContactBatch = await _body(request, ContactBatch)
    contacts = [Contact(**c.model_dump(), updated_at=now()) for c in body.contacts]
    await request.app[STORE].put_contacts(request[TENANT_ID], contacts)
    return json_response({"upserted": len(contacts)})


# templates ------------------------------------------------------------------------------------------
def _template_problems(body: TemplateIn) -> list[dict[str, str]]:
    found = check_template(body)
    for locale, variant in body.locales.items():
        found += check_template(variant, prefix=f"locales.{locale}.")
    return [{"field": f, "message": m} for f, m in found]


async def put_template(request: web.Request) -> web.Response:
    body: TemplateIn = await _body(request, TemplateIn)
    errors = await asyncio.to_thread(_template_problems, body)  # compiling a large source takes a while
    if errors:
        raise ProblemError(422, "the template does not compile or goes over its budget", errors=errors)
    template = await request.app[STORE].put_template(
        request[TENANT_ID], request.match_info["template_id"], body
    )
    return json_response(template.model_dump(mode="json"))


async def _template(request: web.Request) -> Template:
    template = await request.app[STORE].get_template(request[TENANT_ID], request.match_info["template_id"])
    if template is None:
        raise ProblemError(404, "no such template")
    return template


async def get_template(request: web.Request) -> web.Response:
    return json_response((await _template(request)).model_dump(mode="json"))


async def delete_template(request: web.Request) -> web.Response:
    if not await request.app[STORE].delete_template(request[TENANT_ID], request.match_info["template_id"]):
        raise ProblemError(404, "no such template")
    return web.Response(status=204)


async def preview_template(request: web.Request) -> web.Response:
    template = await _template(request)
    body: PreviewIn = await _body(request, PreviewIn) if request.body_exists else PreviewIn()
    tenant = await request.app[STORE].get_tenant(request[TENANT_ID])
    context = template_context(
        tenant_id=request[TENANT_ID], tenant=tenant, data=body.data, contact=body.contact
    )
    content = template.content_for(body.locale or (body.contact.locale if body.contact else None))
    rendered = {}
    try:
        for channel in content.channels():
            rendered[channel] = await render_channel_async(content, channel, context)
    except TemplateRenderError as exc:
        raise ProblemError(
            422, "the template failed to render", errors=[{"field": exc.field, "message": exc.message}]
        ) from None
    return json_response({"template_id": template.id, "version": template.version, "channels": rendered})


def add_routes(app: web.Application) -> None:
    contact = "/v1/contacts/" + ID % "contact_id"
    app.router.add_put(contact, put_contact)
    app.router.add_get(contact, get_contact)
    app.router.add_delete(contact, delete_contact)
    app.router.add_post("/v1/contacts:batch", batch_contacts)
    template = "/v1/templates/" + ID % "template_id"
    app.router.add_put(template, put_template)
    app.router.add_get(template, get_template)
    app.router.add_delete(template, delete_template)
    app.router.add_post(template + ":preview", preview_template)
