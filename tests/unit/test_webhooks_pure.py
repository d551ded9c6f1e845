"""Webhooks' pure parts: event types, deterministic ids, payloads without addresses, signatures a
``standardwebhooks`` receiver accepts, where a webhook may point, and the retry schedule."""

from __future__ import annotations

import re
import time

import pydantic
import pytest
from standardwebhooks import Webhook

from herald_common.backoff import backoff
from herald_common.webhooks.model import EVENT_TYPES, WebhookIn, event_types_for, new_secret
from herald_common.webhooks.targets import TargetRefused, check_target
from herald_common.webhooks.wire import signed_headers, status_body, webhook_id
from herald_common.wire import StatusEvent
from herald_webhooks.deliver import retry_after_s
from herald_webhooks.settings import WebhooksSettings


def _event(**kw: object) -> StatusEvent:
    base: dict[str, object] = {"tenant_id": "t1", "notification_id": "n_1", "status": "sent", "at": 1.5e9}
    return StatusEvent.model_validate({**base, "channel": "email", **kw})


def test_final_subscriptions_get_only_final_states() -> None:
    assert event_types_for("sent") == {"notification.status"}
    final = {"notification.status", "notification.final"}
    assert event_types_for("delivered") == final
    assert event_types_for("suppressed") == final
    assert final | {"event.decision", "campaign.progress", "campaign.finished"} == set(EVENT_TYPES)


def test_webhook_ids_are_stable_per_change_and_endpoint() -> None:
    one = webhook_id(_event(), "e1", "notification.status")
    assert one == webhook_id(_event(), "e1", "notification.status")
    assert one != webhook_id(_event(), "e2", "notification.status")
    assert one != webhook_id(_event(status="delivered"), "e1", "notification.status")
    assert one != webhook_id(_event(channel="sms"), "e1", "notification.status")
    retry = _event(status="retrying", attempts=1)
    assert webhook_id(retry, "e1", "notification.status") != webhook_id(
        retry.model_copy(update={"attempts": 2}), "e1", "notification.status"
    )


def test_payload_carries_status_fields_and_never_a_full_address() -> None:
    event = _event(status="bounced", reason="550 <ada@example.com> gone; +447700900123", attempts=1)
    body = status_body(event, "notification.final")
    assert "ada@example.com" not in body and "+447700900123" not in body
    assert re.search(r'"type":"notification.final","timestamp":"2017-07-14T02:40:00.000000Z"', body)
    assert '"notification_id":"n_1","channel":"email","status":"bounced"' in body


def test_signatures_verify_with_either_secret_while_rotating() -> None:
    new, old = new_secret(), new_secret()
    body = status_body(_event(), "notification.status")
    headers = signed_headers("msg_1", body, [new, old], time.time())
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers)["data"]["status"] == "sent"


def test_secrets_must_be_whsec_base64() -> None:
    ok = {"url": "https://hooks.example.com/h", "event_types": ["notification.status"]}
    WebhookIn.model_validate({**ok, "secret": new_secret()})
    for bad in ("whsec_short", "secret_" + new_secret()[6:], new_secret()[:-1]):
        with pytest.raises(pydantic.ValidationError):
            WebhookIn.model_validate({**ok, "secret": bad})


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/h",
        "https://10.0.0.8/h",
        "https://169.254.169.254/latest",
        "https://[::1]/h",
        "https://[::ffff:192.168.1.1]/h",
        "http://8.8.8.8/h",  # plain http to a host nobody allow-listed
        "ftp://example.com/h",
        "https://user:pw@8.8.8.8/h",
    ],
)
async def test_refused_targets(url: str) -> None:
    with pytest.raises(TargetRefused):
        await check_target(url, frozenset(), False)


async def test_allow_list_opens_private_targets_and_plain_http() -> None:
    await check_target("http://127.0.0.1:8080/h", frozenset({"127.0.0.1"}), False)
    await check_target("https://10.0.0.8/h", frozenset(), True)
    await check_target("https://8.8.8.8/h", frozenset(), False)  # a public address


def test_default_retry_schedule_spans_a_day_and_is_capped() -> None:
    s = WebhooksSettings()
    delays = [
        backoff(n, base_s=s.webhook_retry_base_delay_s, max_s=s.webhook_retry_max_delay_s)
        for n in range(1, 30)
    ]
    assert 2.5 <= delays[0] <= 5 and max(delays) <= 36_000
    assert sum(delays[:20]) >= s.webhook_retry_for_s  # retries outlast the window, then it gives up
    assert retry_after_s("30") == 30 and retry_after_s("soon") is None
