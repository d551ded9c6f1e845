"""The small HTTP server every service runs on HERALD_HEALTH_PORT: /healthz (loop turning), /readyz
(deps + not draining), /metrics (Prometheus). The gateway also mounts /healthz and /readyz on its public
app (for load balancers), never /metrics: that stays off the API port."""

from __future__ import annotations

import orjson
from aiohttp import web

from herald_common import metrics
from herald_common.lifecycle import Lifecycle

LIFECYCLE_KEY = web.AppKey("lifecycle", Lifecycle)


async def _healthz(request: web.Request) -> web.Response:
    ok = request.app[LIFECYCLE_KEY].alive()
    return web.json_response({"status": "ok" if ok else "stalled"}, status=200 if ok else 503)


async def _readyz(request: web.Request) -> web.Response:
    checks = await request.app[LIFECYCLE_KEY].readiness()
    ok = all(checks.values())
    return web.Response(
        body=orjson.dumps({"status": "ready" if ok else "not_ready", "checks": checks}),
        status=200 if ok else 503,
        content_type="application/json",
    )


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})


def add_health_routes(app: web.Application, lifecycle: Lifecycle, *, metrics: bool = True) -> None:
    app[LIFECYCLE_KEY] = lifecycle
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    if metrics:
        app.router.add_get("/metrics", _metrics)


async def start_health_server(lifecycle: Lifecycle, host: str, port: int) -> web.AppRunner:
    app = web.Application()
    add_health_routes(app, lifecycle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
