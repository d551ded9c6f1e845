"""The local outbox: every message a local provider peer captures, as files.

Layout: ``<root>/<channel>/<timestamp>-<seq>.json`` (one JSON record per captured message) and,
for email, the raw RFC 5322 message beside it as ``.eml``. The page that shows them is
:mod:`herald_dev.outbox_pages`.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

import orjson

from herald_common.channels import CHANNELS

_seq = itertools.count()
_STEM = re.compile(r"^[0-9]{1,20}-[0-9]{6,}$")
# What the outbox holds: captured messages per channel, and verified tenant webhooks.
KINDS = (*CHANNELS, "webhooks")


class Outbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        for kind in KINDS:
            (root / kind).mkdir(parents=True, exist_ok=True)

    def write(self, channel: str, record: dict[str, Any], raw: bytes | None = None) -> Path:
        """Store one captured message. ``record`` should carry provider, to, and the content fields."""
        stem = f"{time.time_ns()}-{next(_seq):06d}"
        record = {"channel": channel, "captured_at": time.time(), **record}
        path = self.root / channel / f"{stem}.json"
        if raw is not None:
            (self.root / channel / f"{stem}.eml").write_bytes(raw)
            record["raw_file"] = f"{stem}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
        tmp.rename(path)
        return path

    def messages(self, channel: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` records (of one kind, or all), each with its ``id`` (``kind/stem``)."""
        channels = [channel] if channel else list(KINDS)
        files: list[Path] = []
        for ch in channels:
            files.extend((self.root / ch).glob("*.json"))
        files.sort(key=lambda p: p.name, reverse=True)
        out = []
        for path in files[:limit]:
            if (record := self._load(path)) is not None:
                out.append(record)
        return out

    def get(self, kind: str, stem: str) -> dict[str, Any] | None:
        """One record by its id's parts; None for anything that is not a stored record."""
        if kind not in KINDS or not _STEM.match(stem):
            return None
        return self._load(self.root / kind / f"{stem}.json")

    def raw(self, kind: str, stem: str) -> bytes | None:
        """The raw RFC 5322 message captured beside an email record, if any."""
        if kind not in KINDS or not _STEM.match(stem):
            return None
        path = self.root / kind / f"{stem}.eml"
        return path.read_bytes() if path.is_file() else None

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            record = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return {**record, "id": f"{path.parent.name}/{path.stem}"} if isinstance(record, dict) else None
