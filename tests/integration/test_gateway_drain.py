"""SIGTERM on the gateway: readiness fails first, in-flight requests finish, everything answered 202 is
in Kafka, and the process exits cleanly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from herald_dev.infra import free_port, wait_http_ok
from tests.conftest import Infra, unique
from tests.harness import Api, Env, herald_process, read_topic

pytestmark = [pytest.mark.integration]


async def test_gateway_drains_on_sigterm(infra: Infra, tmp_path: Path) -> None:
    env = Env(infra.bootstrap, infra.redis_url, unique("gwd"))
    await env.create_topics(partitions=2)
    port = free_port()
    proc = herald_process(
        "gateway",
        ["gateway"],
        env.environ(http_port=port, admin_token="a" * 24, drain_timeout_s=4),
        tmp_path / "gw.log",
    )
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    errors: list[str] = []
    try:
        await wait_http_ok(f"{base}/readyz")
        async with aiohttp.ClientSession() as http:
            api = Api(http, base)
            _, tenant = await api.call("POST", "/admin/v1/tenants", {"name": "d"}, token="a" * 24)
            _, key = await api.call("POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", token="a" * 24)
            api.token = key["api_key"]
            stop = asyncio.Event()

            async def client(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        status, body = await api.call(
                            "POST",
                            "/v1/notifications",
                            {
                                "to": {"email": f"c{n}-{i}@example.com"},
                                "content": {"email": {"subject": "s", "text": "t"}},
                            },
                        )
                    except aiohttp.ClientError:
                        return  # the listener closed: a client would retry elsewhere
                    if status == 202:
                        accepted.append(body["id"])
                    elif status != 503:
                        errors.append(f"{status} {body}")

            clients = [asyncio.create_task(client(n)) for n in range(8)]
            await asyncio.sleep(1.0)
            proc.signal(signal.SIGTERM)
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503  # readiness fails first, while still serving
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*clients)
        assert await asyncio.to_thread(proc.proc.wait, 10) == 0  # type: ignore[union-attr]
    finally:
        proc.stop()
    assert not errors, errors[:5]
    assert len(accepted) > 20
    records = await read_topic(env.bootstrap, f"{env.prefix}.requests.transactional")
    in_kafka = {orjson.loads(r.value)["id"] for r in records}
    assert set(accepted) <= in_kafka, "a request answered 202 is missing from Kafka"


async def test_stopping_a_signalled_process_lets_it_drain(infra: Infra, tmp_path: Path) -> None:
    """herald dev signals every service, then stops each: the stop must not send the second SIGTERM
    that means "exit now" (the process would skip its drain and exit 130)."""
    env = Env(infra.bootstrap, infra.redis_url, unique("gws"))
    port = free_port()
    proc = herald_process(
        "gateway", ["gateway"], env.environ(http_port=port, admin_token="a" * 24), tmp_path / "g.log"
    )
    await wait_http_ok(f"http://127.0.0.1:{port}/readyz")
    proc.signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.stop, 15) == 0
    assert '"event":"drained"' in (tmp_path / "g.log").read_text()
