"""The outbox web page (``herald dev``: http://127.0.0.1:8025/): what the local peers captured.

- ``/`` lists captured email, SMS, push and verified webhook deliveries, newest first; ``?channel=``
  filters by kind; a small script refreshes the list every two seconds (without it the page still
  works, reloaded by hand). A row opens the message.
- ``/m/{kind}/{stem}``: one captured message — its addresses, every header (List-Unsubscribe
  included), the text part, the HTML as the member sees it (``/m/email/{stem}/html`` in an iframe with
  ``sandbox=""``, served with a CSP that runs no script and is itself a sandbox), the raw ``.eml``,
  and the whole captured record (SMS and push payloads, a webhook's payload and signature headers).
- ``/api/messages?channel=``: the list as JSON, for the script, tools and tests.

No dependency and no external asset: HTML built here with every value escaped, one style sheet and
one script served by the same app under a CSP that allows only them.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

import orjson
from aiohttp import web

from herald_dev.outbox import KINDS, Outbox

OUTBOX_KEY = web.AppKey("outbox", Outbox)
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-src 'self'; "
    "img-src 'self'; form-action 'none'; base-uri 'none'"
)
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# The captured HTML: styles and images as a mail client shows them, never a script, never a form.
_HTML_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:"

CSS = """
body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}tr.row{cursor:pointer}tr.row:hover{background:#f3f6fb}
nav a{margin-right:.8rem}nav a.on{font-weight:bold;text-decoration:none;color:#222}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:.5rem;margin:0}
iframe{width:100%;height:28rem;border:1px solid #ccc}.k{color:#555;white-space:nowrap}
.summary{max-width:40rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
"""

# Refresh the list in place every 2 s; rows are built with textContent (never parsed as HTML).
JS = """
"use strict";
const table = document.getElementById("messages");
const channel = table.dataset.channel;
function wire(tr) { tr.addEventListener("click", () => { location.href = "/m/" + tr.dataset.id; }); }
document.querySelectorAll("tr.row").forEach(wire);
async function refresh() {
  try {
    const q = channel ? "?channel=" + encodeURIComponent(channel) : "";
    const resp = await fetch("/api/messages" + q, {cache: "no-store"});
    const items = await resp.json();
    const body = document.createElement("tbody");
    for (const m of items) {
      const tr = document.createElement("tr");
      tr.className = "row"; tr.dataset.id = m.id;
      const link = document.createElement("a");
      link.href = "/m/" + m.id; link.textContent = m.time;
      const first = document.createElement("td"); first.appendChild(link); tr.appendChild(first);
      for (const v of [m.channel, m.provider, m.to, m.summary]) {
        const td = document.createElement("td"); td.textContent = v ?? ""; tr.appendChild(td);
      }
      tr.lastChild.className = "summary";
      wire(tr); body.appendChild(tr);
    }
    table.tBodies[0].replaceWith(body);
    document.getElementById("count").textContent = String(items.length);
  } catch (e) { /* the outbox server is restarting: try again next tick */ }
}
setInterval(refresh, 2000);
"""


def _summary(m: dict[str, Any]) -> str:
    value = m.get("subject") or m.get("title") or m.get("body") or m.get("text") or ""
    return str(value)[:300]


def _row(m: dict[str, Any]) -> dict[str, str]:
    """What the list shows of one record (also the JSON the script renders)."""
    return {
        "id": str(m.get("id", "")),
        "time": time.strftime("%H:%M:%S", time.localtime(float(m.get("captured_at", 0)))),
        "channel": str(m.get("channel", "")),
        "provider": str(m.get("provider", "")),
        "to": str(m.get("to", "")),
        "summary": _summary(m),
    }


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><link rel='stylesheet' href='/outbox.css'></head>"
        f"<body>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", headers=_HEADERS)


def _nav(current: str | None) -> str:
    links = [("", "all"), *((k, k) for k in KINDS)]
    return (
        "<nav>"
        + "".join(
            f"<a href='/{'?channel=' + k if k else ''}' class='{'on' if (k or None) == current else ''}'"
            f" id='filter-{name}'>{name}</a>"
            for k, name in links
        )
        + "</nav>"
    )


async def index(request: web.Request) -> web.Response:
    outbox = request.app[OUTBOX_KEY]
    channel = request.query.get("channel") or None
    if channel is not None and channel not in KINDS:
        raise web.HTTPBadRequest(text="unknown channel")
    rows = [_row(m) for m in outbox.messages(channel)]
    cells = "".join(
        f"<tr class='row' data-id='{escape(r['id'], quote=True)}'>"
        f"<td><a href='/m/{escape(r['id'], quote=True)}'>{escape(r['time'])}</a></td>"
        f"<td>{escape(r['channel'])}</td><td>{escape(r['provider'])}</td>"
        f"<td>{escape(r['to'])}</td><td class='summary'>{escape(r['summary'])}</td></tr>"
        for r in rows
    )
    body = (
        f"<h1>Herald outbox</h1>{_nav(channel)}"
        f"<p><span id='count'>{len(rows)}</span> captured (newest first, refreshed every 2 s) in "
        f"{escape(str(outbox.root))}</p>"
        f"<table id='messages' data-channel='{escape(channel or '', quote=True)}'>"
        "<thead><tr><th>time</th><th>channel</th><th>provider</th><th>to</th><th>content</th></tr></thead>"
        f"<tbody>{cells}</tbody></table><script src='/outbox.js'></script>"
    )
    return _page("Herald outbox", body)


def _pairs(title: str, items: dict[str, Any], table_id: str) -> str:
    if not items:
        return ""
    rows = "".join(
        f"<tr><td class='k'>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in items.items()
    )
    return f"<h2>{escape(title)}</h2><table id='{table_id}'>{rows}</table>"


async def message(request: web.Request) -> web.Response:
    kind, stem = request.match_info["kind"], request.match_info["stem"]
    m = request.app[OUTBOX_KEY].get(kind, stem)
    if m is None:
        return _page("Not found", "<h1>No such message</h1><p><a href='/'>outbox</a></p>", status=404)
    captured = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(m.get("captured_at", 0))))
    summary = {
        "channel": m.get("channel"),
        "provider": m.get("provider"),
        "to": m.get("to"),
        "from": m.get("from"),
        "captured": captured,
    }
    parts = [
        f"<p><a href='/'>← outbox</a></p><h1 id='title'>{escape(_summary(m) or kind)}</h1>",
        _pairs("Message", {k: v for k, v in summary.items() if v}, "summary"),
        _pairs("Headers", dict(m.get("headers") or {}), "headers"),
    ]
    if isinstance(m.get("text"), str) and kind != "webhooks":
        parts.append(f"<h2>Text</h2><pre id='text'>{escape(m['text'])}</pre>")
    if m.get("html"):
        parts.append(
            "<h2>HTML as the member sees it</h2>"
            f"<iframe id='html' sandbox='' src='/m/{kind}/{stem}/html' title='HTML part'></iframe>"
        )
    if m.get("raw_file"):
        parts.append(f"<p><a href='/m/{kind}/{stem}/raw' id='raw'>raw message (.eml)</a></p>")
    record = {k: v for k, v in m.items() if k not in ("html", "text", "headers")}
    pretty = orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    parts.append(f"<h2>Captured record</h2><pre id='record'>{escape(pretty)}</pre>")
    return _page(f"{kind}: {_summary(m)}", "".join(parts))


async def message_html(request: web.Request) -> web.Response:
    m = request.app[OUTBOX_KEY].get(request.match_info["kind"], request.match_info["stem"])
    if m is None or not isinstance(m.get("html"), str):
        raise web.HTTPNotFound()
    headers = {"Content-Security-Policy": _HTML_CSP, "X-Content-Type-Options": "nosniff"}
    return web.Response(text=m["html"], content_type="text/html", headers=headers)


async def message_raw(request: web.Request) -> web.Response:
    raw = request.app[OUTBOX_KEY].raw(request.match_info["kind"], request.match_info["stem"])
    if raw is None:
        raise web.HTTPNotFound()
    return web.Response(body=raw, content_type="text/plain", charset="utf-8", headers=_HEADERS)


async def api(request: web.Request) -> web.Response:
    channel = request.query.get("channel") or None
    if channel is not None and channel not in KINDS:
        raise web.HTTPBadRequest(text="unknown channel")
    rows = [{**m, **_row(m)} for m in request.app[OUTBOX_KEY].messages(channel)]
    return web.json_response(rows, dumps=lambda o: orjson.dumps(o).decode())


async def css(_request: web.Request) -> web.Response:
    return web.Response(text=CSS, content_type="text/css", headers=_HEADERS)


async def js(_request: web.Request) -> web.Response:
    return web.Response(text=JS, content_type="text/javascript", headers=_HEADERS)


def outbox_app(outbox: Outbox) -> web.Application:
    app = web.Application()
    app[OUTBOX_KEY] = outbox
    app.router.add_get("/", index)
    app.router.add_get("/api/messages", api)
    app.router.add_get("/m/{kind}/{stem}", message)
    app.router.add_get("/m/{kind}/{stem}/html", message_html)
    app.router.add_get("/m/{kind}/{stem}/raw", message_raw)
    app.router.add_get("/outbox.css", css)
    app.router.add_get("/outbox.js", js)
    return app
