"""structlog configuration: one processor chain, JSON to stdout (console on a TTY).

Only entry points call :func:`configure`; libraries just call ``structlog.get_logger()``.
Fixed keys: ``ts``, ``level``, ``event``, ``service``; correlation ids (tenant, notification,
delivery, campaign) are bound with ``structlog.contextvars`` or ``log.bind``. Addresses are never
logged raw: use :func:`mask` first.
"""

from __future__ import annotations

import logging
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
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Third-party libraries log through stdlib logging: route warnings and above to the same stream.
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
