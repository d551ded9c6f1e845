"""Schemathesis hooks for the fuzzing test: each generated request gets an idempotency key of its own.

The fuzzer would otherwise send the same generated key with different bodies, which the API rightly
answers 422 (a key reused for another request); idempotency itself is tested in tests/integration.
Likewise a webhook's URL points at a host the fuzzed gateway allow-lists: where a URL may point
depends on what its host resolves to, which no schema can state (tests/integration covers it).
Likewise a trigger rule's CEL expressions become valid ones: a string the schema admits is rarely CEL,
and a PUT with one that does not compile is rightly 422 (tested in tests/integration/test_events.py)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import schemathesis

FUZZ_WEBHOOK_HOST = "hooks.fuzz.test"


def _admitted(value: Any, max_length: int) -> bool:
    """A string the schema admits: only those are swapped, so schema-violating ones stay violating."""
    return isinstance(value, str) and 1 <= len(value) <= max_length


@schemathesis.hook
def map_headers(ctx: Any, headers: dict[str, str] | None) -> dict[str, str] | None:
    if headers and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    items: list[Any] = []
    if isinstance(body, dict):
        if isinstance(body.get("url"), str) and "event_types" in body:
            body["url"] = f"https://{FUZZ_WEBHOOK_HOST}/hooks"
        for name in ("notifications", "events"):
            if isinstance(body.get(name), list):
                items += body[name]
    for item in [body, *items]:
        if isinstance(item, dict) and _admitted(item.get("idempotency_key"), 255):
            item["idempotency_key"] = uuid.uuid4().hex
    rules = body.get("rules") if isinstance(body, dict) else None
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, dict):
            for name, valid in (("condition", "true"), ("cancellation_key", '"key"'), ("cancels", '"key"')):
                if _admitted(rule.get(name), 1000):
                    rule[name] = valid
    return body


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """``POST /v1/suppressions:import``: the schema's array of lines, one JSON document per line."""
    if isinstance(value, list):
        return b"\n".join(orjson.dumps(item) for item in value)
    return value.encode() if isinstance(value, str) else orjson.dumps(value)
