"""Schemathesis hooks for the fuzzing test: each generated request gets an idempotency key of its own.

The fuzzer would otherwise send the same generated key with different bodies, which the API rightly
answers 422 (a key reused for another request); idempotency itself is tested in tests/integration.
Likewise a webhook's URL points at a host the fuzzed gateway allow-lists: where a URL may point
depends on what its host resolves to, which no schema can state (tests/integration covers it).
Likewise a trigger rule's CEL expressions become valid ones: a string the schema admits is rarely CEL,
and a PUT with one that does not compile is rightly 422 (tested in tests/integration/test_events.py).
Likewise a new campaign names the template the fuzzed tenant has (:data:`FUZZ_TEMPLATE`), and its
segment becomes a valid one: which templates exist and whether a string is CEL, no schema can state
(an unknown template and a bad segment are 422s tested in tests/integration/test_campaigns.py).
Likewise a notification asking for the transactional lane is of the transactional category: which
categories a tenant lets on that lane is the tenant's setting (tested in test_intake.py); and a
frequency cap's window, whose form the schema states, is within its range (one second to 366 days,
which no regular expression states cleanly; tested in tests/unit/test_policy.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import schemathesis

from herald_common.caps import MAX_WINDOW_S, duration_s
from herald_common.durations import DURATION_PATTERN

FUZZ_WEBHOOK_HOST = "hooks.fuzz.test"
FUZZ_TEMPLATE = "fuzz-promo"  # created for the fuzzed tenant before the run
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
_DURATION = re.compile(DURATION_PATTERN)


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
        if isinstance(item, dict) and item.get("lane") == "transactional" and "to" in item:
            if isinstance(item.get("category"), str):
                item["category"] = "transactional"
        if isinstance(item, dict) and item.get("template_id") == FUZZ_TEMPLATE and "to" in item:
            item["template_id"] = "fuzz-other"  # the campaigns' template (its category may be changed)
    operation = getattr(ctx, "operation", None)
    if isinstance(body, dict) and getattr(operation, "path", "") == "/v1/campaigns":
        if isinstance(body.get("template_id"), str) and _IDENTIFIER.fullmatch(body["template_id"]):
            body["template_id"] = FUZZ_TEMPLATE
        if _admitted(body.get("segment"), 1000):
            body["segment"] = "contact.has_email"
    caps = body.get("frequency_caps") if isinstance(body, dict) else None
    for windows in caps.values() if isinstance(caps, dict) else []:
        for cap in windows if isinstance(windows, list) else []:
            if isinstance(cap, dict) and isinstance(cap.get("per"), str) and _DURATION.fullmatch(cap["per"]):
                if not 1 <= duration_s(cap["per"]) <= MAX_WINDOW_S:
                    cap["per"] = "P1D"
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
