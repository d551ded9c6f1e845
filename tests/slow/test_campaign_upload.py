"""The audience upload at volume: 100,000 NDJSON lines with 10 bad ones streamed to the gateway →
99,990 recipients and 10 reported errors, in memory that does not grow with the upload."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import pytest

from herald_common.settings import load
from herald_dev.infra import free_port
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, running

pytestmark = [pytest.mark.slow]

BAD = {
    17: b'{"contact_id": ""}',
    999: b"not json",
    5000: b'{"contact": {}}',
    12_345: b"42",
    20_000: b'{"contact_id": "a b"}',
}
BAD |= {30_000 + i: b'{"contact_id": "ok", "extra": 1}' for i in range(5)}


async def _body(lines: int) -> AsyncIterator[bytes]:
    chunk: list[bytes] = []
    for n in range(1, lines + 1):
        chunk.append(BAD.get(n, b'{"contact_id": "member-%07d"}' % n) + b"\n")
        if len(chunk) == 2000:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)


async def _upload(api: Api, lines: int) -> tuple[dict, int, float]:
    _, campaign = await api.call("POST", "/v1/campaigns", {"template_id": "promo"})
    tracemalloc.start(1)
    started = time.perf_counter()
    try:
        async with api.http.post(
            f"{api.base}/v1/campaigns/{campaign['id']}/audience",
            data=_body(lines),
            headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/x-ndjson"},
        ) as resp:
            assert resp.status == 200
            result = await resp.json()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, time.perf_counter() - started


async def test_100k_lines_with_10_bad_give_99990_recipients_in_flat_memory(infra: Infra) -> None:
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
        small, small_peak, _ = await _upload(api, 10_000)
        result, peak, seconds = await _upload(api, 100_000)
        assert result["lines"] == 100_000 and result["error_count"] == 10
        assert [e["line"] for e in result["errors"]] == sorted(BAD)
        assert result["audience"] == result["added"] == 99_990
        assert small["audience"] == 9_997
        # Client and server share this process (tracemalloc sees both). Measured: a 2.0 MB peak for the
        # 0.33 MB body, 4.3 MB for the 3.3 MB one; the bound holds the upload well under the body's size
        # times two, and a regression that buffers the body (or the audience) fails it.
        assert peak < 6_000_000, (small_peak, peak)
        print(
            f"100k lines in {seconds:.1f} s (tracemalloc on); "
            f"peak {peak / 1e6:.1f} MB vs {small_peak / 1e6:.1f} MB"
        )
