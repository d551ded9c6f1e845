"""Local peers speaking the SendGrid, Twilio and FCM wire formats, for tests and the local stack.

Each peer checks authentication and request shape, answers with the provider's real success and
error documents, captures accepted messages (in memory on ``peer.messages`` and, when given one,
in an :class:`~herald_dev.outbox.Outbox`), and misbehaves on demand through a
:class:`~herald_dev.peers.faults.FaultPlan`. Build the app with ``peer.app()`` and serve it with
:func:`start_peer`.
"""

from __future__ import annotations

from aiohttp import web

from herald_dev.peers.faults import FaultPlan, RateMeter
from herald_dev.peers.fcm_peer import FcmPeer, make_test_service_account
from herald_dev.peers.sendgrid_peer import SendGridPeer
from herald_dev.peers.twilio_peer import TwilioPeer


async def start_peer(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0 = a free port); returns the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"


__all__ = [
    "FaultPlan",
    "FcmPeer",
    "RateMeter",
    "SendGridPeer",
    "TwilioPeer",
    "make_test_service_account",
    "start_peer",
]
