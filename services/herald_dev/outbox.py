"""The local outbox: every message a local provider peer captures, as files plus a small page.

Layout: ``<root>/<channel>/<timestamp>-<seq>.json`` (one JSON record per captured message) and,
for email, the raw RFC 5322 message beside it as ``.eml``. ``/`` on the outbox web server lists them,
newest first; ``/api/messages`` returns the same as JSON for tools and tests.
"""

from __future__ import annotations

import html
import itertools
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from herald_common.channels import CHANNELS

_seq = itertools.count()
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
        channels = [channel] if channel else list(KINDS)
        files: list[Path] = []
        for ch in channels:
            files.extend((self.root / ch).glob("*.json"))
        files.sort(key=lambda p: p.name, reverse=True)
        out = []
        for path in files[:limit]:
            try:
                out.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue
        return out


OUTBOX_KEY = web.AppKey("outbox", Outbox)


async def _index(request: web.Request) -> web.Response:
    outbox = request.app[OUTBOX_KEY]
    rows = []
    for m in outbox.messages():
        summary = m.get("subject") or m.get("title") or m.get("body") or m.get("text") or ""
        rows.append(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>".format(
                html.escape(time.strftime("%H:%M:%S", time.localtime(m.get("captured_at", 0)))),
                html.escape(str(m.get("channel", ""))),
                html.escape(str(m.get("provider", ""))),
                html.escape(str(m.get("to", ""))),
                html.escape(str(summary))[:2000],
            )
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Herald outbox</title>"
        "<meta http-equiv='refresh' content='5'>"
        "<style>body{font-family:sans-serif}td{border-bottom:1px solid #ddd;padding:4px;"
        "vertical-align:top}pre{white-space:pre-wrap;margin:0}</style></head><body>"
        f"<h1>Herald outbox</h1><p>{len(rows)} captured message(s) in {html.escape(str(outbox.root))}</p>"
        "<table><tr><th>time</th><th>channel</th><th>provider</th><th>to</th><th>content</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


async def _api(request: web.Request) -> web.Response:
    channel = request.query.get("channel")
    if channel is not None and channel not in KINDS:
        raise web.HTTPBadRequest(text="unknown channel")
    return web.json_response(
        request.app[OUTBOX_KEY].messages(channel), dumps=lambda o: orjson.dumps(o).decode()
    )


def outbox_app(outbox: Outbox) -> web.Application:
    app = web.Application()
    app[OUTBOX_KEY] = outbox
    app.router.add_get("/", _index)
    app.router.add_get("/api/messages", _api)
    return app
