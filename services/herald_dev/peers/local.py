"""The provider peers of the local stack (``herald dev``): Twilio, FCM and, when email is configured
to use it, SendGrid, each capturing into the outbox and nothing in memory (``keep=False``).

:meth:`LocalPeers.start` starts the peers whose provider the environment does not already point
somewhere (``HERALD_TWILIO_BASE_URL`` and so on) and returns the ``HERALD_*`` variables that point
the services at them. Receipts go back to the gateway: the Twilio peer posts signed status callbacks
to the StatusCallback URL the sender gives it, the SendGrid peer posts signed events to
``<public base URL>/v1/receipts/sendgrid``. A webhook receiver plays the demo tenant's endpoint: it
verifies every signed delivery and writes it to the outbox's ``webhooks/`` (loopback is allow-listed
for it with ``HERALD_WEBHOOK_ALLOW_HOSTS``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from herald_common.webhooks.model import new_secret
from herald_dev.outbox import Outbox
from herald_dev.peers import FcmPeer, SendGridPeer, TwilioPeer, make_test_service_account, start_peer
from herald_dev.peers.webhook_peer import PATH, WebhookReceiver
from herald_providers.webhooks import generate_signing_key


class LocalPeers:
    def __init__(self, root: Path, outbox: Outbox) -> None:
        self.root = root
        self.outbox = outbox
        self.runners: list[web.AppRunner] = []
        self.started: dict[str, str] = {}  # provider → base URL
        self.webhook_secret = new_secret()
        self.webhook_url: str | None = None  # the demo tenant's webhook endpoint, once started

    async def start(self, env: Mapping[str, str], public_base_url: str) -> dict[str, str]:
        """Start the peers ``env`` does not override; returns the variables to add to it."""
        out: dict[str, str] = {}
        if "HERALD_TWILIO_BASE_URL" not in env:
            sid = env.get("HERALD_TWILIO_ACCOUNT_SID") or "AC" + secrets.token_hex(16)
            token = env.get("HERALD_TWILIO_AUTH_TOKEN") or secrets.token_hex(16)
            url = await self._serve("twilio", TwilioPeer(sid, token, outbox=self.outbox, keep=False).app())
            out |= {
                "HERALD_TWILIO_BASE_URL": url,
                "HERALD_TWILIO_ACCOUNT_SID": sid,
                "HERALD_TWILIO_AUTH_TOKEN": token,
                "HERALD_TWILIO_FROM": env.get("HERALD_TWILIO_FROM") or "+14155550100",
            }
        if "HERALD_FCM_BASE_URL" not in env:
            credentials = self.root / "fcm-service-account.json"
            account = make_test_service_account(credentials, project_id="herald-dev")
            fcm = FcmPeer([account], project_id="herald-dev", outbox=self.outbox, keep=False)
            url = await self._serve("fcm", fcm.app())
            out |= {
                "HERALD_FCM_BASE_URL": url,
                "HERALD_FCM_TOKEN_URL": f"{url}/token",
                "HERALD_FCM_CREDENTIALS_FILE": str(credentials),
                "HERALD_FCM_PROJECT_ID": "herald-dev",
            }
        uses_sendgrid = "sendgrid" in env.get("HERALD_EMAIL_PROVIDERS", "smtp")
        if uses_sendgrid and "HERALD_SENDGRID_BASE_URL" not in env:
            api_key = env.get("HERALD_SENDGRID_API_KEY") or "SG." + secrets.token_urlsafe(32)
            signing_key, public_key = generate_signing_key()
            sendgrid = SendGridPeer(
                api_key,
                outbox=self.outbox,
                keep=False,
                signing_key=signing_key,
                event_webhook_url=f"{public_base_url}/v1/receipts/sendgrid",
            )
            out |= {
                "HERALD_SENDGRID_BASE_URL": await self._serve("sendgrid", sendgrid.app()),
                "HERALD_SENDGRID_API_KEY": api_key,
                "HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
            }
        receiver = WebhookReceiver(self.webhook_secret, outbox=self.outbox, keep=False)
        self.webhook_url = await self._serve("webhook receiver", receiver.app()) + PATH
        out["HERALD_WEBHOOK_ALLOW_HOSTS"] = env.get("HERALD_WEBHOOK_ALLOW_HOSTS") or "127.0.0.1"
        return out

    async def _serve(self, name: str, app: web.Application) -> str:
        runner, url = await start_peer(app)
        self.runners.append(runner)
        self.started[name] = url
        return url

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()
