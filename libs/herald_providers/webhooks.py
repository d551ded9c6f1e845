"""SendGrid's signed Event Webhook: ECDSA (P-256, SHA-256) over ``timestamp + raw body``.

SendGrid posts a JSON array of events with two headers: ``X-Twilio-Email-Event-Webhook-Timestamp``
(Unix seconds) and ``X-Twilio-Email-Event-Webhook-Signature`` (base64 of the DER-encoded ECDSA
signature of the timestamp followed by the exact body bytes). The account's verification key is the
base64 of a DER SubjectPublicKeyInfo, as SendGrid shows it in its settings. The local SendGrid peer
signs with :func:`sign_event_payload` so tests and ``herald dev`` exercise the same check.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def generate_signing_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 key pair: the private key (for a peer) and the public key in SendGrid's format."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, public_key_b64(key.public_key())


def public_key_b64(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """Parse SendGrid's verification key (base64 DER, or PEM). Raises ValueError when it is not one."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError("not a base64 DER or PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA public key")
    return key


def sign_event_payload(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def verify_event_payload(key: ec.EllipticCurvePublicKey, timestamp: str, body: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
