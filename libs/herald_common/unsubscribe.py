"""One-click unsubscribe (RFC 8058): which email carries the link, and the token in it.

A marketing email (a category that is not ``transactional`` and not one of the tenant's
``transactional_categories``) carries ``List-Unsubscribe: <{public base URL}/u/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. The router puts the URL in the rendered email
content (``unsubscribe_url``); the email adapters turn it into those headers.

The token is per recipient and per category: the tenant, the contact id (or, for a notification sent to
an inline address, the address), the category and when it was issued, sealed with AES-256-GCM under a
key derived from ``HERALD_UNSUBSCRIBE_SECRET`` (unset: from the installation's id secret, the one that
signs notification ids). Sealed, not just signed: a forged or altered token does not open, and nothing in
the URL (not the address, not the contact id) can be read by whoever sees it. Tokens do not expire: a
link in a year-old email still works, as list-unsubscribe links must.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Literal

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald_common.policy import is_transactional
from herald_common.schemas import Tenant

PATH = "/u/"
ONE_CLICK = "List-Unsubscribe=One-Click"  # the RFC 8058 POST body, and the List-Unsubscribe-Post value
CONTENT_FIELD = "unsubscribe_url"  # where the rendered email content carries the link
_AAD = b"herald-unsubscribe-v1"
_NONCE = 12
MAX_TOKEN_CHARS = 1024


def is_marketing(category: str, tenant: Tenant | None) -> bool:
    """True for a category whose email carries the link: neither transactional nor one the tenant
    sends on the transactional lane (booking confirmations are not something to unsubscribe from)."""
    return not is_transactional(category, tenant)


def link_key(unsubscribe_secret: str | None, id_secret: bytes) -> bytes:
    """The 32-byte sealing key: from ``HERALD_UNSUBSCRIBE_SECRET`` when set, else derived from the
    installation's id secret (gateway and router derive the same)."""
    if unsubscribe_secret:
        return hashlib.sha256(b"herald-unsubscribe\x1f" + unsubscribe_secret.encode()).digest()
    return hmac.new(id_secret, b"herald-unsubscribe", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Claim:
    """Who a token speaks for: a contact (``kind="contact"``) or an inline address (``"address"``)."""

    tenant_id: str
    kind: Literal["contact", "address"]
    subject: str  # the contact id or the address
    category: str
    issued_at: int


class Tokens:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def issue(self, claim: Claim) -> str:
        body = orjson.dumps([claim.tenant_id, claim.kind[0], claim.subject, claim.category, claim.issued_at])
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._aead.encrypt(nonce, body, _AAD)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, token: str) -> Claim | None:
        """The claim of a token this installation issued; None for anything else."""
        if not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
            tenant_id, kind, subject, category, issued_at = orjson.loads(body)
        except (binascii.Error, ValueError, InvalidTag, TypeError):
            return None
        if kind not in ("c", "a"):
            return None
        return Claim(tenant_id, "contact" if kind == "c" else "address", subject, category, issued_at)


def list_unsubscribe_headers(url: str) -> dict[str, str]:
    """The RFC 2369 / RFC 8058 headers an email adapter adds for the content's ``unsubscribe_url``."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK}


class Links:
    """Builds the per-recipient unsubscribe URL the router puts in marketing email."""

    def __init__(self, tokens: Tokens, public_base_url: str) -> None:
        self.tokens = tokens
        self.base = public_base_url.rstrip("/")

    def url(
        self, tenant_id: str, category: str, *, contact_id: str | None, address: str | None
    ) -> str | None:
        if contact_id:
            claim = Claim(tenant_id, "contact", contact_id, category, int(time.time()))
        elif address:
            claim = Claim(tenant_id, "address", address, category, int(time.time()))
        else:
            return None
        return f"{self.base}{PATH}{self.tokens.issue(claim)}"


__all__ = [
    "CONTENT_FIELD",
    "ONE_CLICK",
    "PATH",
    "Claim",
    "Links",
    "Tokens",
    "is_marketing",
    "link_key",
    "list_unsubscribe_headers",
]
