"""Schemathesis hooks for the fuzzing test: each generated request gets an idempotency key of its own.

The fuzzer would otherwise send the same generated key with different bodies, which the API rightly
answers 422 (a key reused for another request); idempotency itself is tested in tests/integration.
Likewise a webhook's URL points at a host the fuzzed gateway allow-lists: where a URL may point
depends on what its host resolves to, which no schema can state (tests/integration covers it)."""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis

FUZZ_WEBHOOK_HOST = "hooks.fuzz.test"


@schemathesis.hook
def map_headers(ctx: Any, headers: dict[str, str] | None) -> dict[str, str] | None:
    if headers and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    items = body.get("notifications") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("url"), str) and "event_types" in body:
        body["url"] = f"https://{FUZZ_WEBHOOK_HOST}/hooks"
    for item in [body, *(items if isinstance(items, list) else [])]:
        if isinstance(item, dict) and isinstance(item.get("idempotency_key"), str):
            item["idempotency_key"] = uuid.uuid4().hex
    return body
