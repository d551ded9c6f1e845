"""The SMTP adapter against a real aiosmtpd peer: a message with a header the email package refuses
(or that would inject headers) fails only itself, never its batch or its neighbours."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from herald_dev.infra import free_port
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_providers.base import OutboundMessage, PermanentError, SendResult, TransientError, send_many
from herald_providers.batcher import MicroBatcher
from herald_providers.sendgrid import SendGridProvider
from herald_providers.smtp import SmtpConfig, SmtpProvider

pytestmark = pytest.mark.asyncio
LOOPBACK = "127.0.0.1"


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


# --- TLS -------------------------------------------------------------------------------------------------
def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (cert file, key file)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class TlsAwareCapture(SmtpCapture):
    """Records, per message, whether it arrived over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.over_tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.over_tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


def _peer(capture: SmtpCapture, tls: ssl.SSLContext | None) -> Controller:
    controller = Controller(
        capture, hostname="127.0.0.1", port=free_port(), tls_context=tls, ready_timeout=10
    )
    controller.start()
    return controller


async def test_smtp_uses_starttls_whenever_offered_and_still_sends_when_not(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    for tls, want in ((None, False), (server_tls, True)):
        capture = TlsAwareCapture()
        peer = _peer(capture, tls)
        smtp = SmtpProvider(SmtpConfig(port=peer.port))  # the default: opportunistic
        try:
            await smtp.send(_msg(1, "Hello"))
            assert capture.over_tls == [want]
        finally:
            await smtp.close()
            peer.stop()


async def test_required_starttls_verifies_the_certificate_and_refuses_a_server_without_it(
    tmp_path: Path,
) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    capture = TlsAwareCapture()
    peer = _peer(capture, server_tls)
    plain = _peer(TlsAwareCapture(), None)
    try:
        trusted = SmtpProvider(SmtpConfig(port=peer.port, starttls=True, ca_file=str(cert)))
        await trusted.send(_msg(1, "Hello"))
        assert capture.over_tls == [True]
        unverified = SmtpProvider(SmtpConfig(port=peer.port, starttls=True))  # self-signed: refused
        with pytest.raises(TransientError):
            await unverified.send(_msg(2, "Hello"))
        no_tls = SmtpProvider(SmtpConfig(port=plain.port, starttls=True))
        with pytest.raises(TransientError):
            await no_tls.send(_msg(3, "Hello"))
        assert capture.over_tls == [True]
        for provider in (trusted, unverified, no_tls):
            await provider.close()
    finally:
        peer.stop()
        plain.stop()
