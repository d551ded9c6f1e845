"""The SMTP adapter against a real aiosmtpd peer: a message with a header the email package refuses
(or that would inject headers) fails only itself, never its batch or its neighbours."""

from __future__ import annotations

import pytest

from herald_dev.infra import free_port
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_providers.base import OutboundMessage, PermanentError, SendResult, send_many
from herald_providers.batcher import MicroBatcher
from herald_providers.sendgrid import SendGridProvider
from herald_providers.smtp import SmtpConfig, SmtpProvider

pytestmark = pytest.mark.asyncio


def _msg(i: int, subject: str) -> OutboundMessage:
    return OutboundMessage(
        delivery_id=f"d{i}",
        tenant_id="t",
        channel="email",
        to=f"user{i}@example.com",
        content={"subject": subject, "text": "hello", "from": "box@example.com"},
    )


async def test_one_bad_subject_fails_only_itself_and_the_batch_is_delivered_once() -> None:
    capture = SmtpCapture()
    peer = SmtpPeer(free_port(), capture).start()
    smtp = SmtpProvider(SmtpConfig(port=peer.port, pool_size=2))
    try:
        batcher = MicroBatcher(lambda msgs: send_many(smtp, msgs), max_size=5, linger_s=0.05)
        msgs = [_msg(i, f"Hello {i}") for i in range(5)]
        msgs[2] = _msg(2, "Hello\r\nReply-To: thief@evil.example")
        import asyncio

        outcomes = await asyncio.gather(*(batcher.submit(m) for m in msgs), return_exceptions=True)
        bad = outcomes.pop(2)
        assert isinstance(bad, PermanentError) and bad.code == "invalid_header", bad
        assert all(isinstance(o, SendResult) for o in outcomes), outcomes
        delivered = sorted(r for m in capture.snapshot() for r in m.rcpt_to)
        assert delivered == [f"user{i}@example.com" for i in (0, 1, 3, 4)]  # each exactly once
        assert not any("Reply-To" in m.headers for m in capture.snapshot())
    finally:
        await smtp.close()
        peer.stop()


async def test_sendgrid_refuses_a_header_with_a_line_break_for_that_message_only() -> None:
    provider = SendGridProvider(api_key="k", base_url="http://127.0.0.1:9")
    with pytest.raises(PermanentError) as err:
        provider._group_key(_msg(1, "Hi\nBcc: x@evil.example"))
    assert err.value.code == "invalid_header"
    assert provider._group_key(_msg(2, "Hi there"))


async def test_an_smtp_refusal_is_reported_and_logged_without_the_address_or_the_server_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    import orjson
    import structlog

    from herald_common.logging import configure

    capture = SmtpCapture()
    secret = "ann.smith@example.com"
    capture.reject[secret] = f"550 5.1.1 <{secret}> unknown; your subject 'Private matter' bounced"
    peer = SmtpPeer(free_port(), capture).start()
    smtp = SmtpProvider(SmtpConfig(port=peer.port))
    configure("sender", fmt="json")
    try:
        msg = OutboundMessage("d1", "t", "email", secret, {"subject": "Private matter", "text": "x"})
        with pytest.raises(PermanentError) as err:
            await smtp.send(msg)
        assert err.value.reason == "smtp 550 5.1.1 for a***@example.com"
        structlog.get_logger().info("delivery failed", reason=err.value.reason, error=repr(err.value))
        logging.getLogger("aiosmtplib").warning("refused %s", secret)  # a library's own words, too
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 2 and all(orjson.loads(line) for line in lines)
        assert not any(secret in line or "Private matter" in line for line in lines), lines
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        await smtp.close()
        peer.stop()
