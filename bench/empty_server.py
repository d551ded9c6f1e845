"""The reference for intake: an aiohttp handler that reads the body and answers 202 with no work."""

from __future__ import annotations

import sys

from aiohttp import web


async def handler(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"id": "n_0", "status": "accepted"}, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/notifications", handler)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
