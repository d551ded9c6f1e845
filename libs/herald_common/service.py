"""What every entry point does first and last: settings → logging → run the loop → exit cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from herald_common.lifecycle import Lifecycle
from herald_common.logging import configure
from herald_common.settings import CommonSettings

try:  # uvloop is a faster event loop where it installs; asyncio's own loop otherwise.
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def run_service(name: str, settings: CommonSettings, serve: Callable[[Lifecycle], Awaitable[None]]) -> None:
    configure(name, settings.log_level, settings.log_format)
    log = structlog.get_logger()

    async def main() -> None:
        lifecycle = Lifecycle()
        lifecycle.install_signal_handlers()
        await serve(lifecycle)

    log.info("starting")
    runner = uvloop.run if uvloop is not None else asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(main())
    log.info("stopped")


async def wait_drained(task: asyncio.Task[None], lifecycle: Lifecycle, timeout_s: float) -> None:
    """Wait for ``task`` to finish once stopping; cancel it past the drain timeout (nothing committed
    after that point, so its records are redelivered to the next owner)."""
    await lifecycle.stopping.wait()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=timeout_s)
    except TimeoutError:
        structlog.get_logger().warning(
            "drain timeout reached; abandoning in-flight work", timeout_s=timeout_s
        )
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
