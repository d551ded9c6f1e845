"""A tenant's webhook endpoint, locally: the receiving side of Herald's signed webhooks.

Every POST is verified with the ``standardwebhooks`` library against the secrets the receiver holds
(any one matching is enough, as a tenant rotating its secret would do); a verified delivery is
answered 204 and captured (in memory on ``receiver.received`` when ``keep``, and in the outbox under
``webhooks/``), a bad signature 401. ``answer_with`` makes it answer every delivery with another status
(503 to play an endpoint that is down) without capturing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from herald_dev.outbox import Outbox

PATH = "/webhooks"


@dataclass(frozen=True)
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]


class WebhookReceiver:
    def __init__(self, *secrets: str, outbox: Outbox | None = None, keep: bool = True) -> None:
        self.secrets = list(secrets)
        self.outbox = outbox
        self.keep = keep
        self.received: list[Received] = []
        self.refused = 0  # deliveries that did not verify
        self.answer_with: int | None = None
        self.calls = 0

    def verify(self, body: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
        for secret in self.secrets:
            try:
                return dict(Webhook(secret).verify(body, headers))
            except WebhookVerificationError:
                continue
        return None

    async def _receive(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        if self.answer_with is not None:
            return web.Response(status=self.answer_with, text="down for now")
        headers = {k.lower(): v for k, v in request.headers.items()}
        payload = self.verify(body, headers)
        if payload is None:
            self.refused += 1
            return web.Response(status=401, text="signature does not verify")
        item = Received(headers.get("webhook-id", ""), headers, body, payload)
        if self.keep:
            self.received.append(item)
        if self.outbox is not None:
            data = payload.get("data") or {}
            self.outbox.write(
                "webhooks",
                {
                    "provider": "webhook",
                    "to": request.path,
                    "webhook_id": item.webhook_id,
                    "verified": True,
                    "type": payload.get("type"),
                    "text": " ".join(
                        str(v)
                        for v in (payload.get("type"), data.get("notification_id"), data.get("channel"))
                        if v
                    )
                    + f": {data.get('status')}",
                    "payload": payload,
                    "headers": {k: v for k, v in headers.items() if k.startswith("webhook-")},
                },
            )
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PATH, self._receive)
        return app

    def payloads(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.body) for r in self.received]
