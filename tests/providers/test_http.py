"""Shared HTTP helpers: Retry-After parsing, default status classification, redaction."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from herald_providers.base import PermanentError, TransientError
from herald_providers.http import classify_status, parse_retry_after, redact, scrub


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("999999", 3600.0),
        ("soon", None),
    ],
)
def test_retry_after_in_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_as_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    error = classify_status(status, provider="p", retry_after=2.0)
    assert isinstance(error, TransientError)
    assert error.throttled == (status == 429) and error.retry_after == 2.0 and error.provider == "p"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_permanent_statuses(status: int) -> None:
    error = classify_status(status, provider="p")
    assert isinstance(error, PermanentError) and error.code == str(status)


def test_redaction_never_shows_the_whole_value() -> None:
    assert redact("jonathan@example.com") == "jo***@example.com"
    assert redact("+447911123456") == "+4479***56"
    assert redact("ya29.secret-token-value") == "ya29***"
    assert scrub("number +447911123456 is bad", "+447911123456") == "number +4479***56 is bad"
