"""Identifiers: time-ordered notification ids, deterministic delivery ids, partition keys."""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_notification_id() -> str:
    """``n_`` + 9 base-36 chars of milliseconds + 16 random chars: sortable by creation, unguessable."""
    return "n_" + _b36(int(time.time() * 1000), 9) + _b36(int.from_bytes(os.urandom(11), "big"), 16)


def delivery_id(notification_id: str, channel: str, address: str) -> str:
    """Deterministic: the same notification, channel and address always give the same delivery id."""
    digest = hashlib.sha256(f"{notification_id}\x1f{channel}\x1f{address}".encode()).hexdigest()
    return f"d_{digest[:32]}"


def partition_key(tenant_id: str, recipient: str) -> bytes:
    """Per-recipient order: every record for one tenant's contact lands on one partition."""
    return f"{tenant_id}:{recipient}".encode()
