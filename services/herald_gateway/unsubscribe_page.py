"""The hosted unsubscribe page: plain HTML with one inline style sheet, no script, no external asset,
every value escaped; served with a Content-Security-Policy that allows nothing else."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from html import escape

from aiohttp import web

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "h1{font-size:1.4rem}.note{background:#eef6ee;border:1px solid #9c9;padding:.6rem;border-radius:4px}"
    "fieldset{border:1px solid #ccc;border-radius:4px;margin:1rem 0}label{display:block;margin:.3rem 0}"
    "button{font-size:1rem;padding:.4rem 1rem;margin-top:.5rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the token is the page's credential
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
ALL_MARKETING = "all_marketing"


@dataclass(frozen=True, slots=True)
class View:
    """What the page shows: whose list, the category the email came from, and (for a contact) every
    marketing category the page can switch with its current state."""

    token: str
    sender: str
    category: str
    preferences: dict[str, bool] | None  # None: an inline address, no preferences to manage
    notice: str | None = None


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)


def render(view: View) -> web.Response:
    token = escape(view.token, quote=True)
    category = escape(view.category)
    parts = [f"<h1>Email from {escape(view.sender)}</h1>"]
    if view.notice:
        parts.append(f"<p class='note' id='notice'>{escape(view.notice)}</p>")
    # Form actions are relative to /u/{token}, so the page works under any public base path.
    parts.append(
        f"<form method='post' action='{token}' id='unsubscribe'>"
        "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        f"<p>Stop receiving <b>{category}</b> email?</p>"
        f"<button type='submit'>Unsubscribe from {category}</button></form>"
    )
    if view.preferences is not None:
        boxes = "".join(
            f"<label><input type='checkbox' name='category' value='{escape(name, quote=True)}'"
            f"{' checked' if wanted else ''}> {escape(name)}</label>"
            for name, wanted in sorted(view.preferences.items())
        )
        parts.append(
            f"<form method='post' action='{token}/preferences' id='preferences'><fieldset>"
            "<legend>Email I want to receive</legend>"
            f"{boxes}<label><input type='checkbox' name='{ALL_MARKETING}' value='off'> "
            "Unsubscribe from all marketing email</label></fieldset>"
            "<p>Service messages such as booking confirmations are always sent.</p>"
            "<button type='submit'>Save preferences</button></form>"
        )
    return _page(f"Email preferences — {view.sender}", "".join(parts))


def not_found() -> web.Response:
    """Any token that does not open: one page, no detail."""
    return _page("Link not valid", "<h1>This link is not valid</h1>", status=404)
