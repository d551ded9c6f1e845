"""An endpoint that keeps failing is paused and reported, its deliveries dead-lettered (replayable),
and saving it again resumes it (short pause settings)."""

from __future__ import annotations

import orjson
import pytest

from herald_common.topics import Topics
from herald_common.webhooks.model import new_secret
from tests.conftest import Infra
from tests.harness import eventually, read_topic
from tests.integration.webhook_stack import webhook_stack

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_an_endpoint_that_keeps_failing_is_paused_and_reported(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = {"webhook_pause_min_failures": 3, "webhook_pause_after_s": 0.5}
    async with webhook_stack(infra, tmp_path_factory.mktemp("whp"), **settings) as stack:
        stack.api.token = await stack.api.new_tenant("Failing Cinemas")
        secret = new_secret()
        receiver, url = await stack.receiver(secret)
        receiver.answer_with = 500
        body = {"url": url, "event_types": ["notification.status"], "secret": secret}
        assert (await stack.api.call("PUT", "/v1/webhooks/down", body))[0] == 200
        await stack.send("ada@example.com")
        doc: dict = {}

        async def paused() -> bool:
            nonlocal doc
            _, doc = await stack.api.call("GET", "/v1/webhooks/down")
            return bool(doc["status"] == "paused")

        await eventually(paused, timeout_s=30)
        health = doc["health"]
        assert health["paused"] is True and "HTTP 500" in health["paused_reason"], doc
        assert health["last_error"] == "HTTP 500" and health["consecutive_failures"] >= 3
        calls = receiver.calls

        topic = Topics(stack.env.prefix).dead_letters("webhooks")

        async def dead_lettered() -> bool:
            return bool(await read_topic(stack.env.bootstrap, topic, timeout_s=2))

        await eventually(dead_lettered, timeout_s=20)
        letter = (await read_topic(stack.env.bootstrap, topic))[0]
        delivery = orjson.loads(letter.value)
        assert delivery["endpoint_id"] == "down" and delivery["attempt"] == 1  # a replay starts afresh
        assert receiver.calls == calls  # a paused endpoint is not called again

        receiver.answer_with = None
        status, doc = await stack.api.call("PUT", "/v1/webhooks/down", body)  # saving resumes it
        assert status == 200 and doc["status"] == "enabled", doc
        nid = await stack.send("bo@example.com")
        await eventually(
            lambda: any(p["data"]["notification_id"] == nid for p in receiver.payloads()), timeout_s=30
        )
