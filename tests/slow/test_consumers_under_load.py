"""Behaviour the Kubernetes charts rely on, on real processes under load (slow tier: `make test-slow`):
SIGTERM drains a consumer (readiness fails first, in-flight work finishes, offsets are committed,
exit 0 within the drain timeout); a second replica started mid-load takes over partitions; a router,
a tracker or a gateway killed with SIGKILL mid-load loses nothing (the tracker's statuses all arrive;
clients retrying with their Idempotency-Key get each member exactly one email). Every case ends with
each message delivered exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from herald_common.settings import load
from herald_dev.infra import Managed, free_port, wait_http_ok
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, eventually, herald_process, running

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(180)]


@dataclass
class Load:
    env: Env
    api: Api
    capture: SmtpCapture
    tmp: Path

    def sender(self, name: str, **overrides: object) -> tuple[Managed, int]:
        health = free_port()
        env = self.env.environ(
            sender_channel="email",
            sender_lane="transactional",
            smtp_pool_size=4,
            consumer_max_batch=50,
            health_port=health,
            **overrides,
        )
        return herald_process(name, ["sender"], env, self.tmp / f"{name}.log"), health

    async def send(self, n: int, tag: str) -> list[str]:
        ids = []
        for start in range(0, n, 250):
            items = [
                {
                    "to": {"email": f"{tag}{i}@example.com"},
                    "content": {"email": {"subject": "s", "text": "t"}},
                }
                for i in range(start, min(n, start + 250))
            ]
            status, body = await self.api.call("POST", "/v1/notifications:batch", {"notifications": items})
            assert status == 202, body
            ids += [x["id"] for x in body["notifications"]]
        return ids

    def received(self) -> list[str]:
        return [m.rcpt_to[0] for m in self.capture.snapshot()]

    async def exactly_once(self, n: int, tag: str, timeout_s: float = 90) -> None:
        await eventually(lambda: len(set(self.received())) >= n, timeout_s=timeout_s)
        await asyncio.sleep(1.0)
        got = self.received()
        assert sorted(got) == sorted(f"{tag}{i}@example.com" for i in range(n)), (len(got), len(set(got)))


@contextlib.asynccontextmanager
async def load_stack(
    infra: Infra, tmp: Path, *, router_in_process: bool = True, tracker_in_process: bool = True
) -> AsyncIterator[Load]:
    capture = SmtpCapture()
    peer = SmtpPeer(free_port(), capture).start()
    env = Env(infra.bootstrap, infra.redis_url, unique("load"), smtp_port=peer.port)
    await env.create_topics(partitions=6)
    port = free_port()
    services: list = [
        (serve_gateway, load(GatewaySettings, **env.settings(http_port=port, admin_token=ADMIN_TOKEN))),
    ]
    if tracker_in_process:
        services.append((serve_tracker, load(TrackerSettings, **env.settings())))
    if router_in_process:
        services.append((serve_router, load(RouterSettings, **env.settings(router_lane="transactional"))))
    try:
        async with running(*services), aiohttp.ClientSession() as http:
            api = Api(http, f"http://127.0.0.1:{port}")
            api.token = await api.new_tenant()
            yield Load(env, api, capture, tmp)
    finally:
        peer.stop()


async def _metric(port: int, status: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("herald_deliveries_total{") and f'status="{status}"' in line
    )


async def test_sigterm_drains_a_consumer_within_its_timeout(infra: Infra, tmp_path: Path) -> None:
    async with load_stack(infra, tmp_path) as ld:
        await ld.send(400, "d")
        first, health = ld.sender("sender-1", drain_timeout_s=8)
        await eventually(lambda: len(ld.received()) >= 50, timeout_s=40)
        ld.capture.paused = True  # in-flight deliveries are now stuck mid-conversation
        await asyncio.sleep(0.3)
        first.signal(signal.SIGTERM)
        started = time.monotonic()
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{health}/readyz") as resp:
            assert resp.status == 503  # not ready while still finishing its work
        assert first.alive()
        await asyncio.sleep(1.0)
        ld.capture.paused = False  # the in-flight work can finish now
        code = await asyncio.to_thread(first.proc.wait, 15)  # type: ignore[union-attr]
        assert code == 0 and time.monotonic() - started < 8 + 2
        second, health2 = ld.sender("sender-2")
        try:
            await wait_http_ok(f"http://127.0.0.1:{health2}/healthz")
            await ld.exactly_once(400, "d")
            # The drained batch was committed: nothing came back to the new replica as a duplicate.
            assert await _metric(health2, "skipped_duplicate") == 0
        finally:
            assert second.stop() == 0


async def test_second_replica_takes_over_partitions_mid_load(infra: Infra, tmp_path: Path) -> None:
    async with load_stack(infra, tmp_path) as ld:
        ld.capture.data_delay_s = 0.01  # a slowish provider keeps the backlog around
        await ld.send(1500, "s")
        first, h1 = ld.sender("sender-1")
        await eventually(lambda: len(ld.received()) >= 100, timeout_s=40)
        second, h2 = ld.sender("sender-2")
        try:
            await ld.exactly_once(1500, "s", timeout_s=120)
            assert await _metric(h2, "sent") > 0, "the second replica never got partitions"
            assert await _metric(h1, "sent") > 0
        finally:
            assert first.stop() == 0
            assert second.stop() == 0


async def test_router_killed_mid_load_loses_nothing(infra: Infra, tmp_path: Path) -> None:
    async with load_stack(infra, tmp_path, router_in_process=False) as ld:
        sender, _ = ld.sender("sender")
        renv = ld.env.environ(router_lane="transactional", health_port=free_port(), consumer_max_batch=100)
        router = herald_process("router-1", ["router"], renv, tmp_path / "router-1.log")
        try:
            await ld.send(1000, "r")
            await eventually(lambda: len(ld.received()) >= 100, timeout_s=40)
            router.kill()
            router = herald_process("router-2", ["router"], renv, tmp_path / "router-2.log")
            await ld.exactly_once(1000, "r", timeout_s=120)
        finally:
            router.stop()
            assert sender.stop() == 0


async def test_tracker_killed_mid_load_every_status_still_arrives(infra: Infra, tmp_path: Path) -> None:
    async with load_stack(infra, tmp_path, tracker_in_process=False) as ld:
        tenv = ld.env.environ(health_port=free_port(), consumer_max_batch=50)
        tracker = herald_process("tracker-1", ["tracker"], tenv, tmp_path / "tracker-1.log")
        sender, _ = ld.sender("sender")
        try:
            ids = await ld.send(600, "k")
            await eventually(lambda: len(ld.received()) >= 100, timeout_s=40)
            tracker.kill()
            tracker = herald_process("tracker-2", ["tracker"], tenv, tmp_path / "tracker-2.log")
            await ld.exactly_once(600, "k", timeout_s=120)

            async def all_sent() -> bool:
                for nid in ids:
                    status, doc = await ld.api.call("GET", f"/v1/notifications/{nid}")
                    if status != 200 or doc["channels"].get("email", {}).get("status") != "sent":
                        return False
                return True

            deadline = time.monotonic() + 60
            while not await all_sent():
                assert time.monotonic() < deadline, "a status the killed tracker had not folded was lost"
                await asyncio.sleep(0.5)
        finally:
            tracker.stop()
            assert sender.stop() == 0


async def test_gateway_killed_mid_load_every_acknowledged_request_is_delivered_once(
    infra: Infra, tmp_path: Path
) -> None:
    """Clients retry with the same Idempotency-Key until they get a 202, as the API asks them to: with
    the gateway SIGKILLed mid-load and restarted, every member gets exactly one email."""
    async with load_stack(infra, tmp_path) as ld:
        port = free_port()
        genv = ld.env.environ(http_port=port, admin_token=ADMIN_TOKEN, health_port=free_port())
        gateway = herald_process("gateway-1", ["gateway"], genv, tmp_path / "gateway-1.log")
        sender, _ = ld.sender("sender")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {ld.api.token}", "Content-Type": "application/json"}
        n = 400
        try:
            await wait_http_ok(base + "/readyz")

            async def client(worker: int, http: aiohttp.ClientSession) -> None:
                for i in range(worker, n, 8):
                    email = f"g{i}@example.com"
                    body = {"to": {"email": email}, "content": {"email": {"subject": "s", "text": "t"}}}
                    for _ in range(200):  # bounded: about 60 s of retries at most
                        try:
                            async with http.post(
                                base + "/v1/notifications",
                                json=body,
                                headers={**headers, "Idempotency-Key": email},
                            ) as resp:
                                if resp.status == 202:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.3)
                    else:
                        raise AssertionError(f"{email} was never accepted")

            async with aiohttp.ClientSession() as http:
                clients = [asyncio.create_task(client(w, http)) for w in range(8)]
                await eventually(lambda: len(ld.received()) >= 50, timeout_s=40)
                gateway.kill()
                gateway = herald_process("gateway-2", ["gateway"], genv, tmp_path / "gateway-2.log")
                await asyncio.gather(*clients)
            await ld.exactly_once(n, "g", timeout_s=120)
        finally:
            gateway.stop()
            assert sender.stop() == 0
