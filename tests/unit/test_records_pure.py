"""Pure parts of stats, suppressions and SMS replies: what each status change counts, which channel an
address belongs to, which replies opt out or in."""

from __future__ import annotations

import pytest

from herald_common.policy import suppression_code
from herald_common.stats import fields, outcome_counters
from herald_common.status import Folded
from herald_common.suppressions import channel_of, valid_address
from herald_common.wire import StatusEvent
from herald_providers.receipts_twilio import reply_keyword


def _event(status: str, channel: str | None = "email") -> StatusEvent:
    return StatusEvent.model_validate(
        {"tenant_id": "t", "notification_id": "n", "status": status, "at": 0.0, "channel": channel}
    )


@pytest.mark.parametrize(
    "status,previous,applied,channel,counted",
    [
        ("sent", "sending", True, "email", ["sent"]),
        ("delivered", "sent", True, "email", ["delivered"]),
        ("delivered", None, True, "email", ["delivered", "sent"]),  # its "sent" never seen
        ("delivered", "delivered", True, "email", []),  # a replay
        ("sent", "delivered", False, "email", []),  # late, lost on rank
        ("failed", "sending", True, "email", ["failed"]),  # never reached the provider
        ("suppressed", None, True, "sms", ["suppressed"]),
        ("failed", None, True, None, ["failed"]),  # unknown contact: no channel
        ("accepted", None, True, None, []),
    ],
)
def test_each_change_counts_its_outcome_once(
    status: str, previous: str | None, applied: bool, channel: str | None, counted: list[str]
) -> None:
    folded = Folded(applied=applied, status=status, previous=previous, origin=None)
    assert outcome_counters(_event(status, channel), folded) == counted


def test_a_count_goes_to_the_total_and_each_dimension() -> None:
    from herald_common.wire import Origin

    origin = Origin(template_id="hi", campaign_id="summer", category="marketing")
    assert fields(origin, "email", "opened") == [
        "*|opened",
        "template|hi|opened",
        "campaign|summer|opened",
        "channel|email|opened",
    ]


def test_addresses_belong_to_channels_and_reasons_become_codes() -> None:
    assert [channel_of(a) for a in ("a@b.c", "+447911123456", "fcm-token:abc")] == ["email", "sms", "push"]
    assert valid_address("sms", "+447911123456") and not valid_address("sms", "a@b.c")
    assert not valid_address("email", "a b@c.d") and not valid_address("email", "a/b@c")
    assert suppression_code("manual") == "manual" and suppression_code("unknown") == "suppressed"


@pytest.mark.parametrize(
    "body,keyword",
    [
        ("STOP", "stop"),
        (" stop ", "stop"),
        ("Unsubscribe.", "stop"),
        ("quit", "stop"),
        ("START", "start"),
        ("yes", "start"),
        ("unstop", "start"),
        ("stop it", None),
        ("hello", None),
        ("", None),
    ],
)
def test_only_twilios_keywords_opt_out_or_in(body: str, keyword: str | None) -> None:
    assert reply_keyword(body) == keyword
