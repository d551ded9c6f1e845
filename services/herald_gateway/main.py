"""herald gateway: the public HTTP API.

Reading order: settings → app (clients live in cleanup contexts) → listen → wait for SIGTERM →
mark not-ready, stop accepting, finish in-flight requests, flush the producer, exit."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from herald_common.health import start_health_server
from herald_common.lifecycle import Lifecycle
from herald_gateway.app import create_app
from herald_gateway.deadlines import runner_options
from herald_gateway.settings import GatewaySettings

log = structlog.get_logger()


async def serve(settings: GatewaySettings, lifecycle: Lifecycle) -> None:
    app = create_app(settings, lifecycle)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=settings.drain_timeout_s,
        **runner_options(settings),
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, backlog=1024)
    await site.start()
    # /metrics (with /healthz and /readyz) on the health port, like every other service: not public
    health = await start_health_server(lifecycle, settings.health_host, settings.health_port)
    lifecycle.started = True
    log.info("listening", host=settings.http_host, port=settings.http_port)

    async def heartbeat() -> None:
        while True:
            lifecycle.beat()
            await asyncio.sleep(1.0)

    beat = asyncio.create_task(heartbeat())
    try:
        await lifecycle.stopping.wait()
        # Readiness already fails; give load balancers a moment to notice before closing the socket.
        await asyncio.sleep(min(1.0, settings.drain_timeout_s / 4))
    finally:
        beat.cancel()
        await runner.cleanup()  # stops listening, waits for in-flight requests, then closes clients
        await health.cleanup()
        log.info("drained")
