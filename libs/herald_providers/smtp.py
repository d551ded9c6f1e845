"""Email over SMTP with a small pool of persistent connections (aiosmtplib) and auth when configured.
TLS: implicit TLS with ``use_tls``; else STARTTLS whenever the server offers it (opportunistic, RFC 7435:
encrypted against passive eavesdroppers, the certificate not checked), or required with ``starttls``
(then the certificate is verified, against ``ca_file`` if given, and a server without STARTTLS fails).
Classification: 5xx replies are permanent (a 5xx on RCPT marks the address invalid), 4xx replies,
timeouts and connection failures are transient."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from email.charset import QP, Charset
from email.errors import MessageError
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid

import aiohttp
import aiosmtplib

from herald_common.fields import header_problem
from herald_common.logging import mask
from herald_common.substitution import expand
from herald_common.unsubscribe import CONTENT_FIELD as UNSUBSCRIBE
from herald_common.unsubscribe import list_unsubscribe_headers
from herald_providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderSpec,
    SendResult,
    Settings,
    TransientError,
)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_tls: bool = False
    ca_file: str | None = None
    pool_size: int = 8
    timeout_s: float = 15.0
    default_from: str = "no-reply@herald.local"
    default_from_name: str | None = "Herald"
    message_id_domain: str = "herald.local"


_ENHANCED = re.compile(r"^\s*([245]\.[0-9]{1,3}\.[0-9]{1,3})\b")  # RFC 3463, e.g. 5.1.1
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in a raw .eml, safe for any text


def _text(body: str, subtype: str) -> MIMEText:
    return MIMEText(body, subtype, _UTF8)  # type: ignore[arg-type]  # a Charset instance is accepted


def _header(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


HEADER_FIELDS = ("subject", "from", "from_name", UNSUBSCRIBE)


def build_message(msg: OutboundMessage, cfg: SmtpConfig) -> Message:
    """The RFC 5322 message, built with the compat32 MIME classes: several times cheaper per message
    than the modern EmailMessage API, whose header objects parse everything they are given.

    A header value with a control character (CR/LF would inject headers of its own) is this message's
    :class:`PermanentError` (``invalid_header``), never anyone else's. A bulk email's per-recipient
    substitutions are expanded first (:func:`herald_common.substitution.expand`)."""
    content = expand(msg.content)
    for field in (*HEADER_FIELDS, "to"):
        if (problem := header_problem(msg.to if field == "to" else content.get(field))) is not None:
            raise PermanentError(f"the {field} {problem}", code="invalid_header", provider="smtp")
    text, html = content.get("text"), content.get("html")
    body = text or "This message is best viewed in an HTML-capable mail client."
    email: Message
    if html:
        email = MIMEMultipart("alternative")
        email.attach(_text(body, "plain"))
        email.attach(_text(html, "html"))
    else:
        email = _text(body, "plain")
    sender = content.get("from") or cfg.default_from
    name = content.get("from_name") or cfg.default_from_name
    email["From"] = formataddr((name, sender), charset="utf-8") if name else sender
    email["To"] = msg.to
    email["Subject"] = _header(content.get("subject", ""))  # type: ignore[assignment]  # Header is accepted
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = make_msgid(idstring=msg.delivery_id, domain=cfg.message_id_domain)
    email["X-Herald-Delivery-Id"] = msg.delivery_id
    if isinstance(url := content.get(UNSUBSCRIBE), str) and url:
        for name, value in list_unsubscribe_headers(url).items():
            email[name] = value
    return email


class SmtpProvider:
    name = "smtp"
    channel = "email"

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(cfg.pool_size)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                await conn.quit()

    async def _connect(self) -> aiosmtplib.SMTP:
        conn = aiosmtplib.SMTP(
            hostname=self.cfg.host,
            port=self.cfg.port,
            timeout=self.cfg.timeout_s,
            use_tls=self.cfg.use_tls,
            # True: required; None: whenever offered; never both STARTTLS and implicit TLS
            start_tls=True if self.cfg.starttls else (False if self.cfg.use_tls else None),
            validate_certs=self.cfg.starttls or self.cfg.use_tls,
            cert_bundle=self.cfg.ca_file,
        )
        await conn.connect()
        if self.cfg.username:
            await conn.login(self.cfg.username, self.cfg.password or "")
        return conn

    async def send(self, msg: OutboundMessage) -> SendResult:
        email = build_message(msg, self.cfg)
        async with self._slots:
            conn = self._idle.get_nowait() if not self._idle.empty() else None
            try:
                if conn is None or not conn.is_connected:
                    conn = await self._connect()
                await conn.send_message(email)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                conn = self._discard(conn, keep=True)
                refused = exc.recipients[0] if exc.recipients else None
                code = refused.code if refused else 550
                text = refused.message if refused else ""
                raise self._classify(code, text, recipient=msg.to) from None
            except aiosmtplib.SMTPResponseException as exc:
                conn = self._discard(conn, keep=exc.code < 500 and exc.code != 421)
                raise self._classify(exc.code, exc.message, recipient=None) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                conn = self._discard(conn, keep=False)
                # the type only: an exception's text can carry addresses (SMTPSenderRefused's does)
                raise TransientError(
                    f"smtp connection problem: {type(exc).__name__}", provider=self.name
                ) from None
            except (MessageError, ValueError) as exc:  # after OSError: ssl errors are ValueErrors too
                # the email package refused to write this message: its own fault, and only its own
                reason = f"the message cannot be written: {type(exc).__name__}"
                raise PermanentError(reason, code="invalid_header", provider=self.name) from None
            finally:
                if conn is not None:
                    self._idle.put_nowait(conn)
        return SendResult(provider=self.name, provider_message_id=email["Message-ID"].strip("<>"))

    def _discard(self, conn: aiosmtplib.SMTP | None, keep: bool) -> aiosmtplib.SMTP | None:
        if conn is None or (keep and conn.is_connected):
            return conn
        conn.close()
        return None

    def _classify(self, code: int, text: str, recipient: str | None) -> TransientError | PermanentError:
        """The reason is the reply code, its enhanced status code and the masked recipient: never the
        server's text, which often echoes the address, and sometimes the subject."""
        enhanced = _ENHANCED.match(text or "")
        reason = f"smtp {code}" + (f" {enhanced.group(1)}" if enhanced else "")
        if recipient is not None:
            reason += f" for {mask(recipient)}"
        if code >= 500:
            return PermanentError(
                reason, code=str(code), provider=self.name, invalid_recipient=recipient is not None
            )
        # A 4xx for one recipient (greylisting, full mailbox) says nothing about the server's health.
        return TransientError(reason, code=str(code), provider=self.name, provider_fault=recipient is None)


def _build(settings: Settings, session: aiohttp.ClientSession | None) -> Provider:
    password = settings.smtp_password
    return SmtpProvider(
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_use_tls,
            ca_file=str(ca) if (ca := getattr(settings, "smtp_ca_file", None)) else None,
            pool_size=settings.smtp_pool_size,
            timeout_s=settings.smtp_timeout_s,
            default_from=settings.email_from,
            default_from_name=settings.email_from_name,
        )
    )


SPEC = ProviderSpec(
    name=SmtpProvider.name,
    channel=SmtpProvider.channel,
    build=_build,
    account=lambda s: f"{s.smtp_host}:{s.smtp_port}",
    needs_http=False,
    default=True,
)
