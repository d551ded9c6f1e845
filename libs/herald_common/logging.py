"""structlog configuration: one processor chain, JSON to stdout (console on a TTY).

Only entry points call :func:`configure`; libraries just call ``structlog.get_logger()``.
Fixed keys: ``ts``, ``level``, ``event``, ``service``; correlation ids (tenant, notification,
delivery, campaign) are bound with ``structlog.contextvars`` or ``log.bind``. Addresses are never
logged raw: use :func:`mask` first; and as a last line of defence every string of every log line (an
exception's text and traceback included) has what looks like an email address or phone number masked.

Records of the standard library's loggers (aiohttp's tracebacks, asyncio's "Task exception was never
retrieved", aiokafka) go through the same chain: with JSON output every line on stdout is one JSON object.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog


def mask(address: str | None) -> str:
    """Hide an email address, phone number or push token, keeping enough to debug with."""
    if not address:
        return ""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if address.startswith("+") and len(address) > 5:
        return f"{address[:3]}***{address[-2:]}"
    return f"{address[:4]}***" if len(address) > 8 else "***"


_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}\b")


def scrub(text: str) -> str:
    """``text`` with every email address and E.164 phone number in it masked."""
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask(m.group()), text)
    if "+" in text:
        text = _PHONE.sub(lambda m: mask(m.group()), text)
    return text


def _scrub_values(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def _rename_event_keys(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["ts"] = event_dict.pop("timestamp", None)
    return event_dict


def configure(service: str, level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _rename_event_keys,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer(
            serializer=lambda o, **_: orjson.dumps(o, default=str).decode()
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    structlog.configure(
        processors=[*shared, _scrub_values, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Third-party libraries log through stdlib logging (aiohttp.*, asyncio, aiokafka): warnings and above
    # go through the same processors and renderer, tracebacks rendered into the line, not after it.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _scrub_values, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
