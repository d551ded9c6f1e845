"""The OpenAPI 3.1 document served at /v1/openapi.json, built from the same pydantic models that
validate requests, so the document cannot drift from what the API accepts."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from herald_common.campaigns.model import CampaignIn, CampaignPatch
from herald_common.events import EventBatch, EventIn, TriggerIn
from herald_common.fields import json_value_schema
from herald_common.schemas import (
    ApiKeyIn,
    CancelByKeyIn,
    ContactBatch,
    ContactIn,
    NotificationBatch,
    NotificationIn,
    PreviewIn,
    TemplateIn,
    TenantIn,
    TenantPatch,
)
from herald_common.status import OVERALL, RANK
from herald_common.webhooks.model import WebhookIn
from herald_gateway import openapi_records

_MODELS: list[type[BaseModel]] = [
    NotificationIn,
    NotificationBatch,
    ContactIn,
    ContactBatch,
    TemplateIn,
    PreviewIn,
    TenantIn,
    TenantPatch,
    ApiKeyIn,
    CancelByKeyIn,
    WebhookIn,
    EventIn,
    EventBatch,
    TriggerIn,
    CampaignIn,
    CampaignPatch,
]

# (method, path, summary, request model or None, success status, auth)
_OPERATIONS: list[tuple[str, str, str, str | None, int, str]] = [
    ("post", "/admin/v1/tenants", "Create a tenant (a cinema chain)", "TenantIn", 201, "admin"),
    ("get", "/admin/v1/tenants/{tenant_id}", "Read a tenant", None, 200, "admin"),
    (
        "patch",
        "/admin/v1/tenants/{tenant_id}",
        "Change a tenant (sender identity, rate limit)",
        "TenantPatch",
        200,
        "admin",
    ),
    (
        "post",
        "/admin/v1/tenants/{tenant_id}/api-keys",
        "Issue an API key (shown once)",
        "ApiKeyIn",
        201,
        "admin",
    ),
    ("delete", "/admin/v1/tenants/{tenant_id}/api-keys/{key_id}", "Revoke an API key", None, 204, "admin"),
    ("put", "/v1/contacts/{contact_id}", "Create or replace a contact", "ContactIn", 200, "tenant"),
    ("get", "/v1/contacts/{contact_id}", "Read a contact", None, 200, "tenant"),
    ("delete", "/v1/contacts/{contact_id}", "Erase a contact", None, 204, "tenant"),
    ("post", "/v1/contacts:batch", "Upsert up to 1,000 contacts", "ContactBatch", 200, "tenant"),
    ("put", "/v1/templates/{template_id}", "Create or replace a template", "TemplateIn", 200, "tenant"),
    ("get", "/v1/templates/{template_id}", "Read a template", None, 200, "tenant"),
    ("delete", "/v1/templates/{template_id}", "Delete a template", None, 204, "tenant"),
    ("post", "/v1/templates/{template_id}:preview", "Render a template", "PreviewIn", 200, "tenant"),
    ("post", "/v1/notifications", "Send a notification (202 once durable)", "NotificationIn", 202, "tenant"),
    ("post", "/v1/notifications:batch", "Send up to 1,000 notifications", "NotificationBatch", 202, "tenant"),
    ("get", "/v1/notifications/{notification_id}", "Status per channel", None, 200, "tenant"),
    ("post", "/v1/events", "Send a loyalty event (202 once durable)", "EventIn", 202, "tenant"),
    ("post", "/v1/events:batch", "Send up to 1,000 loyalty events", "EventBatch", 202, "tenant"),
    ("get", "/v1/events/{event_id}", "What each trigger rule decided for an event", None, 200, "tenant"),
    (
        "put",
        "/v1/triggers/{event_type}",
        "Create or replace an event type's trigger",
        "TriggerIn",
        200,
        "tenant",
    ),
    ("get", "/v1/triggers/{event_type}", "Read a trigger", None, 200, "tenant"),
    ("delete", "/v1/triggers/{event_type}", "Delete a trigger", None, 204, "tenant"),
    (
        "put",
        "/v1/webhooks/{webhook_id}",
        "Create or replace a webhook endpoint (a generated secret is shown once); resumes a paused one",
        "WebhookIn",
        200,
        "tenant",
    ),
    ("get", "/v1/webhooks/{webhook_id}", "Read a webhook endpoint and its health", None, 200, "tenant"),
    ("delete", "/v1/webhooks/{webhook_id}", "Delete a webhook endpoint", None, 204, "tenant"),
    ("get", "/v1/webhooks", "List the webhook endpoints", None, 200, "tenant"),
    (
        "post",
        "/v1/notifications/{notification_id}:cancel",
        "Cancel a notification not sent yet (202; 200 if already cancelled; 409 once sending or sent)",
        None,
        202,
        "tenant",
    ),
    (
        "post",
        "/v1/notifications:cancel-by-key",
        "Cancel the tenant's notifications with a cancellation key accepted before now",
        "CancelByKeyIn",
        200,
        "tenant",
    ),
    ("post", "/v1/campaigns", "Create a campaign (a draft)", "CampaignIn", 201, "tenant"),
    ("get", "/v1/campaigns", "List the campaigns, newest first (limit, cursor)", None, 200, "tenant"),
    ("get", "/v1/campaigns/{campaign_id}", "A campaign: state, counts per outcome, ETA", None, 200, "tenant"),
    ("patch", "/v1/campaigns/{campaign_id}", "Change a campaign's rate", "CampaignPatch", 200, "tenant"),
    ("post", "/v1/campaigns/{campaign_id}:start", "Start a draft campaign", None, 202, "tenant"),
    ("post", "/v1/campaigns/{campaign_id}:pause", "Pause a campaign", None, 202, "tenant"),
    ("post", "/v1/campaigns/{campaign_id}:resume", "Resume a paused campaign", None, 202, "tenant"),
    (
        "post",
        "/v1/campaigns/{campaign_id}:cancel",
        "Cancel a campaign and what it queued",
        None,
        202,
        "tenant",
    ),
    (
        "post",
        "/v1/campaigns/{campaign_id}:resend-failed",
        "A draft follow-up campaign to this one's failed recipients",
        None,
        201,
        "tenant",
    ),
    (
        "post",
        "/v1/campaigns/{campaign_id}/audience",
        "Append to a draft's audience: NDJSON or CSV streamed, bad lines reported by number",
        None,
        200,
        "tenant",
    ),
    (
        "get",
        "/v1/campaigns/{campaign_id}/recipients",
        "Recipients by outcome (status, limit, cursor)",
        None,
        200,
        "tenant",
    ),
    (
        "post",
        "/v1/receipts/{provider}",
        "Provider receipts: sendgrid (signed Event Webhook), twilio (X-Twilio-Signature); deduplicated",
        None,
        200,
        "provider",
    ),
]

# Operations whose request body may be left out (a preview with no sample data, a key with no name).
_OPTIONAL_BODY = {"PreviewIn", "ApiKeyIn"}

# Providers authenticate receipts by signature, not by bearer token.
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "admin": [{"adminToken": []}],
    "tenant": [{"apiKey": []}],
    "provider": [],
}


def _typed(**types: str) -> dict[str, Any]:
    """JSON Schema properties of plain types: ``name="string"`` → ``{"name": {"type": "string"}}``."""
    return {name: {"type": t} for name, t in types.items()}


_PROBLEM = {
    "type": "object",
    "properties": {
        **_typed(type="string", title="string", status="integer", detail="string"),
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["title", "status", "detail"],
}

# GET /v1/notifications/{id}: the overall status (derived from the channels', see herald_common.status)
# and each channel's own.
_STATUS = {
    "type": "object",
    "properties": {
        **_typed(
            id="string", accepted_at="number", reason="string", reason_code="string", next_attempt_at="number"
        ),
        "status": {
            "enum": list(OVERALL),
            "description": "overall: partially_failed when one channel reached sent/delivered and "
            "another failed, bounced or expired",
        },
        "origin": {
            "type": "object",
            "description": "what decided this notification: contact, template, category, and the "
            "campaign or the trigger (event type) and event that produced it",
            "properties": _typed(
                contact_id="string",
                template_id="string",
                category="string",
                campaign_id="string",
                trigger="string",
                event_id="string",
            ),
        },
        "channels": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "status": {"enum": list(RANK)},
                    **_typed(
                        provider="string",
                        provider_message_id="string",
                        attempts="integer",
                        reason="string",
                        reason_code="string",
                        updated_at="number",
                        next_attempt_at="number",
                        opened_at="number",
                        clicked_at="number",
                        unsubscribed_at="number",
                        complained_at="number",
                    ),
                },
            },
        },
    },
    "required": ["id", "status", "accepted_at", "channels"],
}


def _close_pattern_maps(node: Any) -> None:
    """A map whose keys must match a pattern (locales, categories) admits no other key: say so, since
    ``patternProperties`` alone leaves every other key valid."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for child in node.values():
            _close_pattern_maps(child)
    elif isinstance(node, list):
        for child in node:
            _close_pattern_maps(child)


@lru_cache(maxsize=2)
def document(admin: bool = False) -> dict[str, Any]:
    """The API's OpenAPI document: the tenant API (``GET /v1/openapi.json``, public), or with the admin
    API too (``GET /admin/v1/openapi.json``, admin token only)."""
    _, schemas = models_json_schema(
        [(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    components = dict(schemas.get("$defs", {}))
    components["Problem"] = _PROBLEM
    _close_pattern_maps(components)
    components["JsonValue"] = json_value_schema()
    components["NotificationStatus"] = _STATUS
    components.update(openapi_records.schemas())
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, model, status, auth in _OPERATIONS:
        if auth == "admin" and not admin:
            continue
        params = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in path.replace(":", "/").split("/")
            if part.startswith("{")
        ]
        op: dict[str, Any] = {
            "summary": summary,
            "security": _SECURITY[auth],
            "parameters": params,
            "responses": {
                str(status): {"description": "success"},
                "default": {
                    "description": "problem",
                    "content": {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    },
                },
            },
        }
        if method == "post" and path in ("/v1/notifications", "/v1/events"):
            op["parameters"].append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255},
                }
            )
        if method == "get" and path == "/v1/notifications/{notification_id}":
            op["responses"]["200"]["content"] = {
                "application/json": {"schema": {"$ref": "#/components/schemas/NotificationStatus"}}
            }
        if path.startswith("/v1/campaigns/{campaign_id}"):
            op["parameters"][0]["schema"] = {"type": "string", "pattern": "^c_[0-9a-f]{16}$"}
        if path.endswith("/audience"):
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        if model:
            op["requestBody"] = {
                "required": model not in _OPTIONAL_BODY,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
            }
        paths.setdefault(path, {})[method] = op
    paths.update(openapi_records.paths())  # message log, stats, suppressions
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald",
            "version": "1",
            "description": "Notification delivery for cinema chains.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a tenant API key"},
                **(
                    {"adminToken": {"type": "http", "scheme": "bearer", "description": "HERALD_ADMIN_TOKEN"}}
                    if admin
                    else {}
                ),
            },
        },
    }
