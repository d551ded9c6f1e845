"""List-Unsubscribe and List-Unsubscribe-Post (RFC 8058) on both email adapters, against their real
peers: the SMTP message carries the headers; SendGrid carries them per personalization, so messages
that differ only in their link still share one request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from herald_dev.infra import free_port
from herald_dev.peers import SendGridPeer
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_providers.base import OutboundMessage, PermanentError, SendResult
from herald_providers.sendgrid import SendGridProvider
from herald_providers.smtp import SmtpConfig, SmtpProvider

pytestmark = pytest.mark.asyncio
Serve = Callable[[web.Application], Awaitable[str]]
ONE_CLICK = "List-Unsubscribe=One-Click"


def _msg(i: int, **extra: str) -> OutboundMessage:
    content = {"subject": "Offers", "text": "hello", "from": "news@cinema.example", **extra}
    return OutboundMessage(f"d{i}", "t", "email", f"member{i}@example.com", content)


async def test_smtp_message_carries_the_one_click_headers_and_refuses_a_crlf_link() -> None:
    capture = SmtpCapture()
    peer = SmtpPeer(free_port(), capture).start()
    smtp = SmtpProvider(SmtpConfig(port=peer.port, pool_size=1))
    try:
        await smtp.send(_msg(1, unsubscribe_url="https://h.example/u/abc"))
        await smtp.send(_msg(2))  # no link (transactional): no headers
        with pytest.raises(PermanentError) as bad:
            await smtp.send(_msg(3, unsubscribe_url="https://h.example/u/x\r\nBcc: all@example.com"))
        assert bad.value.code == "invalid_header"
    finally:
        await smtp.close()
        peer.stop()
    first, second = capture.snapshot()
    assert first.headers["List-Unsubscribe"] == "<https://h.example/u/abc>"
    assert first.headers["List-Unsubscribe-Post"] == ONE_CLICK
    assert "List-Unsubscribe" not in second.headers and "List-Unsubscribe-Post" not in second.headers


async def test_sendgrid_puts_the_headers_in_each_personalization_and_still_batches(
    serve: Serve, http_session: aiohttp.ClientSession
) -> None:
    peer = SendGridPeer("SG.k")
    provider = SendGridProvider(api_key="SG.k", base_url=await serve(peer.app()), session=http_session)
    await provider.start()
    msgs = [_msg(i, unsubscribe_url=f"https://h.example/u/{i}") for i in range(3)]
    assert provider.requests_needed(msgs) == 1

    results = await provider.send_batch([*msgs, _msg(9, unsubscribe_url="https://h.example/u/\n")])

    assert all(isinstance(r, SendResult) for r in results[:3])
    assert isinstance(results[3], PermanentError) and results[3].code == "invalid_header"
    [body] = peer.requests
    assert "unsubscribe_url" not in body and "headers" not in body
    assert [p["headers"] for p in body["personalizations"]] == [
        {"List-Unsubscribe": f"<https://h.example/u/{i}>", "List-Unsubscribe-Post": ONE_CLICK}
        for i in range(3)
    ]
    assert peer.messages[1]["headers"]["List-Unsubscribe"] == "<https://h.example/u/1>"
