"""Sandboxed rendering of per-channel content with Jinja2's SandboxedEnvironment.

Templates see ``contact``, ``data`` and ``tenant`` and nothing else; attribute access to Python
internals raises a SecurityError, loops are bounded by the template's own size, and the output size is
capped. HTML bodies are autoescaped; subjects, texts, SMS and push are not (they are not HTML).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.nodes import Template as TemplateNode
from jinja2.sandbox import ImmutableSandboxedEnvironment

from herald_common.schemas import ChannelContent

MAX_OUTPUT_CHARS = 1_000_000


class TemplateRenderError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_TEXT_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=Undefined)
_HTML_ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=Undefined)

# (channel, field) -> uses the HTML environment?
_FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    "email": (("subject", False), ("html", True), ("text", False)),
    "sms": (("text", False),),
    "push": (("title", False), ("body", False)),
}


@lru_cache(maxsize=4096)
def _compile(source: str, html: bool) -> Any:
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


def check_syntax(content: ChannelContent, prefix: str = "") -> list[tuple[str, str]]:
    """Return (field path, message) for every field that does not compile."""
    problems = []
    for channel in content.channels():
        part = getattr(content, channel)
        for field, html in _FIELDS[channel]:
            source = getattr(part, field, None)
            if not source:
                continue
            try:
                node: TemplateNode = (_HTML_ENV if html else _TEXT_ENV).parse(source)
                del node
            except TemplateError as exc:
                problems.append((f"{prefix}{channel}.{field}", f"template syntax error: {exc}"))
    return problems


def _render_one(source: str, html: bool, context: dict[str, Any], field: str) -> str:
    try:
        out: str = _compile(source, html).render(context)
    except TemplateError as exc:  # SecurityError, UndefinedError, syntax errors
        raise TemplateRenderError(field, str(exc)) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError) as exc:
        raise TemplateRenderError(field, f"{type(exc).__name__}: {exc}") from exc
    if len(out) > MAX_OUTPUT_CHARS:
        raise TemplateRenderError(field, "rendered output is too large")
    return out


def render_channel(content: ChannelContent, channel: str, context: dict[str, Any]) -> dict[str, Any]:
    """Render one channel's fields; returns a plain dict (subject/html/text, text, title/body/data)."""
    part = getattr(content, channel)
    if part is None:
        raise TemplateRenderError(channel, f"no {channel} content")
    rendered: dict[str, Any] = {}
    for field, html in _FIELDS[channel]:
        source = getattr(part, field, None)
        if source:
            rendered[field] = _render_one(source, html, context, f"{channel}.{field}")
    if channel == "push":
        rendered["data"] = {k: _render_one(v, False, context, f"push.data.{k}") for k, v in part.data.items()}
    return rendered
