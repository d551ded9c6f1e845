"""Field types shared by Herald's data shapes, each stating in its JSON schema what it accepts, so the
OpenAPI document built from the models says exactly what the API validates: identifiers, categories,
E.164 phones, email addresses, locales, IANA time zones, and free-form JSON bounded to what every hop
can carry."""

from __future__ import annotations

import re
from typing import Annotated, Any
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

# --- header text ------------------------------------------------------------------------------------------
# What ends up in a message header (an email's subject and from name, an SMS sender id) holds no control
# characters and no Unicode line breaks: a CR or LF there would inject headers of its own. The pattern is in
# the JSON schema (ECMA-262 and Rust regex syntax alike); :func:`header_problem` checks rendered values.
HEADER_PATTERN = r"^[^\x00-\x1f\x7f\x85\u2028\u2029]*$"
_HEADER_BAD = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def header_problem(value: object) -> str | None:
    """Why ``value`` cannot be a header value (None when it can)."""
    if isinstance(value, str) and (bad := _HEADER_BAD.search(value)) is not None:
        return f"holds a control character (U+{ord(bad.group()):04X}) at position {bad.start()}"
    return None


# ``Annotated[str, StringConstraints(max_length=...), HEADER_CHARS]``: a string that can be a header value
HEADER_CHARS = StringConstraints(pattern=HEADER_PATTERN)


Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")]
ShortText = Annotated[str, StringConstraints(max_length=1000)]
CancellationKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$")]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,63}$")]
# A Google Cloud project id (6 to 30 lowercase letters, digits, hyphens; a letter first, no hyphen last),
# optionally domain-scoped (example.com:project): the FCM project a tenant's push messages go to.
FCM_PROJECT_PATTERN = r"^(?:[a-z0-9][a-z0-9.\-]{0,61}[a-z0-9]:)?[a-z][a-z0-9\-]{4,28}[a-z0-9]$"
FcmProject = Annotated[str, StringConstraints(pattern=FCM_PROJECT_PATTERN)]
_TZ = frozenset(available_timezones())
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


# E.164 syntax: "+", a country code and up to 15 digits in all. Whether the number is allocated is the
# SMS provider's question (the Twilio adapter checks it before sending and fails such a number at once).
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
Phone = Annotated[str, StringConstraints(pattern=E164_PATTERN)]


# The HTML "valid email address" grammar (what browsers accept), checked with one compiled regex for the
# common ASCII case; anything else (internationalised addresses) goes through email-validator.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if len(value) <= 254 and _EMAIL.match(value) and ".." not in value and not value.startswith("."):
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address: {exc}") from None


Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]


# --- free-form JSON (contact attributes, notification data) ----------------------------------------------
# Any JSON, but only what every hop can carry: integers that fit 64 bits (orjson's range; larger ones
# would be stored and then fail every later read), nesting at most MAX_JSON_DEPTH deep.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
MAX_JSON_DEPTH = 16
_JSON_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ]
}


def _json_safe(value: Any, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError("holds an integer outside the 64-bit range")
        return value
    if isinstance(value, dict):
        for v in value.values():
            _json_safe(v, depth + 1)
        return value
    if isinstance(value, list):
        for v in value:
            _json_safe(v, depth + 1)
        return value
    raise ValueError(f"holds a {type(value).__name__}, which is not JSON")


JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(_json_safe),
    WithJsonSchema({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}),
]


def json_value_schema() -> dict[str, Any]:
    """The JSON schema of one free-form value (``#/components/schemas/JsonValue`` in the OpenAPI
    document), integer range included."""
    return _JSON_VALUE_SCHEMA


def whole(value: Any) -> Any:
    """5.0 → 5: JSON Schema counts an integral number as an integer, so the API does too."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer field: JSON Schema counts 5.0 as the integer 5, so the API does too (and nothing else).
BurstSize = Annotated[int, Field(ge=1, le=10_000_000), BeforeValidator(whole)]


def _one_of_present(*fields: str, kind: str) -> Any:
    """JSON-schema branches, one per field, each requiring that field present and not null."""
    return [{"required": [f], "properties": {f: {"type": kind}}} for f in fields]


def _tz(value: str) -> str:
    if value not in _TZ:
        raise ValueError("must be an IANA time zone such as Europe/London")
    return value


Locale = Annotated[str, StringConstraints(max_length=35, pattern=_LOCALE.pattern)]
TimeZone = Annotated[str, AfterValidator(_tz), WithJsonSchema({"type": "string", "enum": sorted(_TZ)})]
