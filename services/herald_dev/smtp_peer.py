"""A local SMTP server (aiosmtpd) that accepts everything and captures it into the outbox.

``reject`` lets tests make it answer like a real server that refuses a recipient (5xx) or defers (4xx).
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from herald_dev.outbox import Outbox
from herald_providers.smtp import SPEC as SMTP_PROVIDER

_FOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass
class Captured:
    mail_from: str
    rcpt_to: list[str]
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]
    raw: bytes


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return payload.decode(part.get_content_charset() or "utf-8", errors="replace")


def _unfold(value: str) -> str:
    """A header value as a mail client reads it (RFC 5322 unfolding: a line break before a space or
    tab is removed); long values such as a List-Unsubscribe URL arrive folded."""
    return _FOLD.sub("", value).strip()


def _parse(envelope: Envelope) -> Captured:
    """Parse with the compat32 policy: several times faster than the modern one, and the peer must
    not be the bottleneck of a benchmark."""
    raw = envelope.original_content or envelope.content or b""
    if isinstance(raw, str):
        raw = raw.encode()
    msg = message_from_bytes(raw)
    text = html = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain" and text is None:
            text = _decoded(part)
        elif ctype == "text/html" and html is None:
            html = _decoded(part)
    subject = str(make_header(decode_header(msg.get("Subject", ""))))
    return Captured(
        mail_from=envelope.mail_from or "",
        rcpt_to=list(envelope.rcpt_tos),
        subject=subject,
        text=text,
        html=html,
        headers={k: _unfold(str(v)) for k, v in msg.items()},
        raw=raw,
    )


@dataclass
class SmtpCapture:
    outbox: Outbox | None = None
    messages: list[Captured] = field(default_factory=list)
    reject: dict[str, str] = field(
        default_factory=dict
    )  # recipient → SMTP reply, e.g. "550 5.1.1 no such user"
    rejected: list[str] = field(default_factory=list)  # recipients refused so far, in order
    paused: bool = False  # while True, sessions wait at RCPT (nothing is accepted)
    data_delay_s: float = 0.0  # a slow server: wait this long before accepting each message
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        while self.paused:  # noqa: ASYNC110 -- set from the test's thread, so no asyncio.Event here
            await asyncio.sleep(0.01)
        reply = self.reject.get(address.lower())
        if reply:
            with self.lock:
                self.rejected.append(address.lower())
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        captured = _parse(envelope)
        with self.lock:
            self.messages.append(captured)
        if self.outbox is not None:
            record: dict[str, Any] = {
                "provider": SMTP_PROVIDER.name,
                "to": ", ".join(captured.rcpt_to),
                "from": captured.mail_from,
                "subject": captured.subject,
                "text": captured.text,
                "html": captured.html,
                "delivery_id": captured.headers.get("X-Herald-Delivery-Id"),
                "headers": captured.headers,
            }
            self.outbox.write(SMTP_PROVIDER.channel, record, raw=captured.raw)
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[Captured]:
        with self.lock:
            return list(self.messages)

    def since(self, start: int) -> list[Captured]:
        """The messages captured from index ``start`` on."""
        with self.lock:
            return self.messages[start:]


class SmtpPeer:
    def __init__(self, port: int, capture: SmtpCapture, host: str = "127.0.0.1") -> None:
        self.capture = capture
        self.controller = Controller(capture, hostname=host, port=port, ready_timeout=10.0)
        self.host, self.port = host, port

    def start(self) -> SmtpPeer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
