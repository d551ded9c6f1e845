"""The audience upload: NDJSON streamed to the gateway, bad lines reported with their numbers and
counted, never the whole upload refused; CSV with inline contact fields upserted (the 100,000-line
run with its memory bound is tests/slow/test_campaign_upload.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from herald_common.settings import load
from herald_dev.infra import free_port
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, running

pytestmark = [pytest.mark.integration]

LINES = 2_000
BAD = {
    17: b'{"contact_id": ""}',
    99: b"not json",
    500: b'{"contact": {}}',
    1_234: b"42",
    1_400: b'{"contact_id": "a b"}',
}
BAD |= {1_500 + i: b'{"contact_id": "ok", "extra": 1}' for i in range(5)}


async def _body() -> AsyncIterator[bytes]:
    chunk: list[bytes] = []
    for n in range(1, LINES + 1):
        chunk.append(BAD.get(n, b'{"contact_id": "member-%07d"}' % n) + b"\n")
        if len(chunk) == 2000:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)


async def test_ndjson_bad_lines_reported_and_counted_csv_fields_upserted(infra: Infra) -> None:
    import aiohttp

    env = Env(infra.bootstrap, infra.redis_url, unique("aud"))
    await env.create_topics(partitions=1)
    port = free_port()
    gw = load(GatewaySettings, **env.settings(http_port=port, admin_token=ADMIN_TOKEN))
    async with running((serve_gateway, gw)), aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{port}")
        api.token = await api.new_tenant()
        await api.call(
            "PUT", "/v1/templates/promo", {"category": "marketing", "email": {"subject": "s", "text": "t"}}
        )
        status, campaign = await api.call("POST", "/v1/campaigns", {"template_id": "promo"})
        assert status == 201, campaign
        async with http.post(
            f"{api.base}/v1/campaigns/{campaign['id']}/audience",
            data=_body(),
            headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/x-ndjson"},
        ) as resp:
            result = await resp.json()
        assert resp.status == 200, result
        assert result["lines"] == LINES and result["error_count"] == 10
        assert [e["line"] for e in result["errors"]] == sorted(BAD)
        assert result["audience"] == result["added"] == LINES - 10
        status, doc = await api.call("GET", f"/v1/campaigns/{campaign['id']}")
        assert status == 200 and doc["audience"] == LINES - 10

        csv = (
            b"contact_id,email,attributes.tier\nm-1,m1@example.com,gold\nm-2,not-an-email,gold\nm-3,,silver\n"
        )
        status, result = await api.call(
            "POST", f"/v1/campaigns/{campaign['id']}/audience", data=csv, headers={"Content-Type": "text/csv"}
        )
        assert status == 200 and result["added"] == 2 and result["error_count"] == 1
        assert result["errors"][0]["line"] == 3 and "email" in result["errors"][0]["message"]
        status, contact = await api.call("GET", "/v1/contacts/m-1")
        assert (
            status == 200
            and contact["email"] == "m1@example.com"
            and contact["attributes"] == {"tier": "gold"}
        )
        status, _ = await api.call(
            "POST",
            f"/v1/campaigns/{campaign['id']}/audience",
            data=b"x",
            headers={"Content-Type": "text/plain"},
        )
        assert status == 415
