"""Bulk email with per-recipient substitutions at the adapters: SendGrid batches them with each member's
own subject, SMTP sends them expanded, and a CR/LF that a value would put in a header fails that member."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.header import decode_header, make_header

import aiohttp
import pytest
from aiohttp import web

from herald_common.substitution import CONTENT_FIELD, MARK
from herald_dev.peers import SendGridPeer
from herald_providers.base import OutboundMessage, PermanentError, SendResult
from herald_providers.sendgrid import SendGridProvider
from herald_providers.smtp import SmtpConfig, build_message

Serve = Callable[[web.Application], Awaitable[str]]
S, T, H = (f"{MARK}{f}0{MARK}" for f in ("subject", "text", "html"))
SKELETON = {"from": "news@cinema.example", "subject": f"Hello {S}", "text": f"Hi {T}", "html": f"<p>{H}</p>"}


def member(i: int, name: str) -> OutboundMessage:
    subs = {S: name, T: name, H: name.replace("&", "&amp;")}
    return OutboundMessage(f"d{i}", "t1", "email", f"m{i}@example.com", {**SKELETON, CONTENT_FIELD: subs})


async def test_sendgrid_sends_one_request_with_each_members_subject_and_values(
    serve: Serve, http_session: aiohttp.ClientSession
) -> None:
    peer = SendGridPeer("k")
    provider = SendGridProvider(api_key="k", base_url=await serve(peer.app()), session=http_session)
    big = member(3, "x" * 11_000)  # over SendGrid's 10,000 bytes of substitutions: sent expanded, alone
    results = await provider.send_batch(
        [member(0, "Ann"), member(1, "B&B"), member(2, "Bad\r\nBcc: x@evil.example"), big]
    )
    assert [type(r) for r in results] == [SendResult, SendResult, PermanentError, SendResult]
    assert isinstance(results[2], PermanentError) and results[2].code == "invalid_header"
    first, second = peer.requests
    assert [p["subject"] for p in first["personalizations"]] == ["Hello Ann", "Hello B&B"]
    assert first["personalizations"][1]["substitutions"][H] == "B&amp;B"
    assert (
        "substitutions" not in second["personalizations"][0] and second["subject"] == "Hello " + "x" * 11_000
    )
    by_to = {m["to"]: m for m in peer.messages}
    assert by_to["m1@example.com"]["html"] == "<p>B&amp;B</p>" and by_to["m1@example.com"]["text"] == "Hi B&B"
    assert MARK not in by_to["m3@example.com"]["text"]


def test_smtp_writes_the_expanded_message_and_refuses_a_line_break_from_a_value() -> None:
    email = build_message(member(0, "Zoë"), SmtpConfig())
    assert str(make_header(decode_header(email["Subject"]))) == "Hello Zoë"
    text, html = (part.get_payload(decode=True).decode() for part in email.get_payload())
    assert text == "Hi Zoë" and html == "<p>Zoë</p>"
    with pytest.raises(PermanentError) as refused:
        build_message(member(1, "x\nBcc: y@evil.example"), SmtpConfig())
    assert refused.value.code == "invalid_header"
