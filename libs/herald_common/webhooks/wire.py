"""What goes over ``<prefix>.webhooks``: one webhook delivery to one endpoint, and how it is signed.

A delivery carries its body as the exact JSON text, so every attempt sends (and signs) the same
bytes. Its ``webhook_id`` is deterministic (:func:`webhook_id`): the same status event for the same
endpoint always gets the same id, however often it is redelivered or retried, so a receiver dedupes
on ``webhook-id``.

Payload (Standard Webhooks' shape)::

    {"type": "notification.status", "timestamp": "2026-11-30T10:00:00.123456Z",
     "data": {"notification_id": "n_…", "channel": "email", "status": "delivered", "reason": …,
              "provider": "smtp", "provider_message_id": "…", "attempts": 1, "at": 1796032800.12}}

Fields without a value are left out; ``channel`` is absent for notification-level statuses. No
address is ever sent: the data holds no address field, and email addresses and phone numbers inside
``reason`` are masked.

Headers: ``webhook-id``, ``webhook-timestamp`` (Unix seconds of the attempt) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` per secret, space-separated (the current
secret first, then the previous one while it is being rotated away from), signed with the
``standardwebhooks`` library.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict
from standardwebhooks import Webhook

from herald_common.logging import mask
from herald_common.notices import Notice
from herald_common.wire import StatusEvent

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d{7,15}")


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    webhook_id: str
    tenant_id: str
    endpoint_id: str
    event_type: str
    notification_id: str  # the subject: a notification, or the event or campaign of a notice
    body: str  # the exact JSON sent and signed
    attempt: int = 1
    first_attempt_at: float | None = None  # when attempt 1 was made: the retry window counts from it


def webhook_id(event: StatusEvent, endpoint_id: str, event_type: str) -> str:
    """Deterministic: notification, channel, status (and attempt number while retrying), endpoint and
    event type. Two different changes never share an id; one change always has the same."""
    attempt = str(event.attempts or "") if event.status in ("sending", "retrying") else ""
    parts = (event.notification_id, event.channel or "", event.status, attempt, endpoint_id, event_type)
    return "msg_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def scrub(text: str) -> str:
    """Mask email addresses and phone numbers inside free text (a provider's error message)."""
    text = _EMAIL.sub(lambda m: mask(m.group(0)), text)
    return _PHONE.sub(lambda m: mask(m.group(0)), text)


def status_body(event: StatusEvent, event_type: str) -> str:
    data = {
        "notification_id": event.notification_id,
        "channel": event.channel,
        "status": event.status,
        "reason": scrub(event.reason) if event.reason else None,
        "provider": event.provider,
        "provider_message_id": event.provider_message_id,
        "attempts": event.attempts,
        "next_attempt_at": event.next_attempt_at,
        "at": event.at,
    }
    stamp = datetime.fromtimestamp(event.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = {"type": event_type, "timestamp": stamp, "data": {k: v for k, v in data.items() if v is not None}}
    return orjson.dumps(doc).decode()


def notice_webhook_id(notice: Notice, endpoint_id: str) -> str:
    """Deterministic like :func:`webhook_id`: type, subject, sequence and endpoint."""
    parts = (notice.type, notice.subject_id, notice.seq, endpoint_id)
    return "msg_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def notice_body(notice: Notice) -> str:
    """A notice as Standard Webhooks' shape; free text (a CEL error) is scrubbed of addresses."""
    data = orjson.loads(scrub(orjson.dumps(notice.data).decode()))
    stamp = datetime.fromtimestamp(notice.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return orjson.dumps({"type": notice.type, "timestamp": stamp, "data": data}).decode()


def signed_headers(msg_id: str, body: str, secrets: list[str], at: float) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt at ``at`` (Unix seconds)."""
    stamp = datetime.fromtimestamp(int(at), UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id, stamp, body) for secret in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at)), "webhook-signature": signatures}
