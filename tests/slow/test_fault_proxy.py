"""The stack behind a fault proxy: every service reaches Kafka and Redis only through FaultProxy, which
adds latency and then cuts every connection, several times, while a load goes through. Nothing is lost
(every notification reaches the SMTP peer and a final status), nothing is dead-lettered, and nothing
is sent twice, not even a batch the gateway answered 503 after its write reached the broker: the
client's retry with the same idempotency keys is written again under the same notification ids."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from herald_dev.faultproxy import FaultProxy
from herald_dev.infra import free_port, start_broker, start_valkey
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from tests.conftest import Infra, unique
from tests.harness import Api, Env, eventually, read_topic, running
from tests.integration.stack import transactional_email_services

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(240)]

N = 300
BATCH = 25


async def _post_until_accepted(api: Api, items: list[dict]) -> tuple[list[str], bool]:
    """A batch, retried with the same idempotency keys until the gateway accepts it (it answers 503
    while Kafka or Redis is cut off); True when it had to be retried."""
    retried = False
    while True:
        try:
            status, body = await api.call("POST", "/v1/notifications:batch", {"notifications": items})
        except aiohttp.ClientError:
            status, body = 0, None
        if status == 202:
            return [n["id"] for n in body["notifications"]], retried
        assert status in (0, 409, 503), body
        retried = True
        await asyncio.sleep(0.2)


async def test_latency_and_dropped_connections_lose_nothing(infra: Infra, tmp_path: Path) -> None:
    kafka_port = free_port()
    kafka_proxy = FaultProxy(kafka_port)
    # the broker advertises the proxy, so clients following its metadata come back through it too
    broker = start_broker(kafka_port, log=tmp_path / "broker.log", advertised_port=kafka_proxy.port)
    redis_port = free_port()
    valkey = start_valkey(redis_port, tmp_path / "valkey", appendonly=True, log=tmp_path / "valkey.log")
    redis_proxy = FaultProxy(redis_port)
    await kafka_proxy.start()
    await redis_proxy.start()
    capture = SmtpCapture(data_delay_s=0.005)
    peer = SmtpPeer(free_port(), capture).start()
    env = Env(
        f"127.0.0.1:{kafka_proxy.port}",
        f"redis://127.0.0.1:{redis_proxy.port}/0",
        unique("fp"),
        smtp_port=peer.port,
    )
    await env.create_topics(partitions=4)
    http_port = free_port()
    services = transactional_email_services(env, http_port, peer.port)
    try:
        async with running(*services), aiohttp.ClientSession() as http:
            api = Api(http, f"http://127.0.0.1:{http_port}")
            api.token = await api.new_tenant()
            items = [
                {
                    "to": {"email": f"f{i}@example.com"},
                    "content": {"email": {"subject": "s", "text": "t"}},
                    "idempotency_key": f"k{i}",
                }
                for i in range(N)
            ]

            retried: set[str] = set()  # addresses of batches answered 503 (or cut) before their 202

            async def load_in() -> list[str]:
                ids: list[str] = []
                for start in range(0, N, BATCH):
                    batch = items[start : start + BATCH]
                    got, again = await _post_until_accepted(api, batch)
                    ids += got
                    if again:
                        retried.update(item["to"]["email"] for item in batch)
                    await asyncio.sleep(0.05)
                return ids

            loading = asyncio.create_task(load_in())
            await eventually(lambda: len(capture.snapshot()) >= 30, timeout_s=30)
            kafka_proxy.latency_s = redis_proxy.latency_s = 0.03
            await asyncio.sleep(2.0)
            kafka_proxy.latency_s = redis_proxy.latency_s = 0.0
            for _ in range(3):  # cut, and keep refusing reconnections for half a second
                for proxy in (redis_proxy, kafka_proxy):
                    proxy.refusing = True
                    proxy.drop()  # may find none open at a moment when nothing was talking
                    await asyncio.sleep(0.5)
                    proxy.refusing = False
                    await asyncio.sleep(0.5)
            ids = await asyncio.wait_for(loading, timeout=60)
            assert redis_proxy.dropped > 0 and kafka_proxy.dropped > 0  # connections really were cut
            assert len(ids) == N

            await eventually(lambda: len({m.rcpt_to[0] for m in capture.snapshot()}) >= N, timeout_s=90)
            await asyncio.sleep(1.0)  # anything sent twice would arrive now
            received = Counter(m.rcpt_to[0] for m in capture.snapshot())
            assert set(received) == {f"f{i}@example.com" for i in range(N)}
            twice = {a for a, n in received.items() if n > 1}
            # A batch whose write reached the broker but whose acknowledgement was cut is answered 503;
            # its retry (same idempotency keys) is written under the same ids, which the ledger sends once.
            assert not twice, f"sent twice ({len(retried)} addresses in retried batches): {sorted(twice)}"

            async def all_final() -> bool:
                for nid in ids:
                    status, doc = await api.call("GET", f"/v1/notifications/{nid}")
                    if status != 200 or doc["status"] != "sent":
                        return False
                return True

            await eventually(all_final, timeout_s=60, interval_s=0.5)
            for service in ("sender", "router", "tracker"):
                assert await read_topic(env.bootstrap, f"{env.prefix}.deadletter.{service}") == []
            assert redis_proxy.dropped >= 3 and kafka_proxy.dropped >= 3
            print("fault proxy:", redis_proxy.dropped, kafka_proxy.dropped, "dropped;", len(twice), "twice")
    finally:
        peer.stop()
        await kafka_proxy.stop()
        await redis_proxy.stop()
        broker.stop()
        valkey.stop()
