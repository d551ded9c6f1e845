"""Every service from the image (`make test-image`): the embedded broker, Valkey and the SMTP, Twilio
and FCM peers run on the host; the chart's topics Job and every Deployment it renders run as
containers of herald:local on the host network, with the chart's settings (tests/image/workloads.py).

Proves: the topics Job exits 0; each service passes /readyz, runs as the chart's non-root user with a
read-only root filesystem; an email, an SMS and a push sent through the gateway container arrive at
the peers; every log line is JSON; and stopping each container with its pod's grace period drains it
to exit 0 within that period. Not part of `make test`: it needs the image (`make image`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from herald_cli.main import SERVICE_SETTINGS
from herald_common.channels import CHANNELS
from herald_common.settings import LANES
from herald_dev.infra import free_port, start_broker, start_valkey
from herald_dev.launcher import DEMO, seed_demo
from herald_dev.peers import FcmPeer, TwilioPeer, make_test_service_account, start_peer
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer
from tests.harness import ADMIN_TOKEN
from tests.image.workloads import Workload, engine, render, run_args, workloads

pytestmark = [pytest.mark.image, pytest.mark.timeout(600)]

IMAGE = os.environ.get("HERALD_IMAGE", "herald:local")
T = TypeVar("T")


class Loop:
    """An event loop in a thread: serves the HTTP peers and runs the tests' client calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Stack:
    engine: str
    services: list[Workload]
    topics: Workload
    gateway: str
    smtp: SmtpCapture
    twilio: TwilioPeer
    fcm: FcmPeer
    loop: Loop


def _container(engine_name: str, *args: str, check: bool = True) -> str:
    done = subprocess.run([engine_name, *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"{engine_name} {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _logs(engine_name: str, work: Workload) -> str:
    return _container(engine_name, "logs", work.container, check=False)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _wait_ready(engine_name: str, services: list[Workload], timeout_s: float = 180.0) -> None:
    pending = {w.name: w for w in services}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for name, work in list(pending.items()):
            assert work.probe_port is not None
            if _ready(work.probe_port):
                del pending[name]
            elif (
                _container(engine_name, "inspect", "--format", "{{.State.Running}}", work.container) != "true"
            ):
                raise AssertionError(
                    f"{name} exited before it was ready:\n{_logs(engine_name, work)[-3000:]}"
                )
        time.sleep(0.5)
    if pending:
        tails = "\n".join(f"--- {n}\n{_logs(engine_name, w)[-1500:]}" for n, w in pending.items())
        raise AssertionError(f"not ready after {timeout_s:.0f} s: {sorted(pending)}\n{tails}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    engine_name = engine()
    if subprocess.run([engine_name, "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        raise AssertionError(f"no image {IMAGE}: build it with `make image` (make test-image does)")
    work = tmp_path_factory.mktemp("image")
    kport, rport = free_port(), free_port()
    broker = start_broker(kport, log=work / "broker.log")
    valkey = start_valkey(rport, work / "valkey", appendonly=False, log=work / "valkey.log")
    smtp_capture = SmtpCapture()
    smtp = SmtpPeer(free_port(), smtp_capture).start()
    loop = Loop()
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    account = make_test_service_account(work / "fcm.json", project_id="herald-image")
    twilio = TwilioPeer(sid, token)
    fcm = FcmPeer([account], project_id="herald-image")
    runners = []
    containers: list[Workload] = []
    try:
        twilio_runner, twilio_url = loop.run(start_peer(twilio.app()))
        fcm_runner, fcm_url = loop.run(start_peer(fcm.app()))
        runners = [twilio_runner, fcm_runner]
        gateway_port = free_port()
        values = {
            "kafka": {"bootstrapServers": f"127.0.0.1:{kport}"},
            "redis": {"url": f"redis://127.0.0.1:{rport}/0"},
            "topics": {"partitions": 4},
            "secrets": {
                "create": True,
                "data": {
                    "adminToken": ADMIN_TOKEN,
                    "twilioAuthToken": token,
                    "fcmCredentials": (work / "fcm.json").read_text(),
                },
            },
            "providers": {
                "emailFrom": "tickets@herald.example",
                "smtp": {"host": "127.0.0.1", "port": smtp.port, "starttls": False},
                "twilio": {"baseUrl": twilio_url, "accountSid": sid, "from": "+14155550100"},
                "fcm": {"baseUrl": fcm_url, "tokenUrl": f"{fcm_url}/token", "projectId": "herald-image"},
            },
            "receipts": {"publicBaseUrl": f"http://127.0.0.1:{gateway_port}"},
            "webhooks": {"allowHosts": ["127.0.0.1"]},
        }
        every = workloads(render(values))
        run_id = uuid.uuid4().hex[:8]
        for w in every:
            w.container = f"herald-test-{run_id}-{w.name}"
            if w.probe_port is not None and w.args[:1] == ["gateway"]:
                w.env["HERALD_HTTP_PORT"] = str(gateway_port)
                w.probe_port = gateway_port
        (topics,) = [w for w in every if w.probe_port is None]
        services = [w for w in every if w.probe_port is not None]
        containers.append(topics)
        _container(engine_name, *run_args(engine_name, IMAGE, topics, work / "files")[1:])
        code = _container(engine_name, "wait", topics.container)
        assert code == "0", f"topics Job exited {code}:\n{_logs(engine_name, topics)}"
        for w in services:
            containers.append(w)
            _container(engine_name, *run_args(engine_name, IMAGE, w, work / "files")[1:])
        _wait_ready(engine_name, services)
        yield Stack(
            engine_name,
            services,
            topics,
            f"http://127.0.0.1:{gateway_port}",
            smtp_capture,
            twilio,
            fcm,
            loop,
        )
    finally:
        for w in containers:
            (work / f"{w.name}.log").write_text(_logs(engine_name, w))
            _container(engine_name, "rm", "--force", "--time", "0", w.container, check=False)
        for runner in reversed(runners):
            loop.run(runner.cleanup())
        loop.close()
        smtp.stop()
        broker.stop()
        valkey.stop()


def test_the_chart_runs_every_service_of_the_cli(stack: Stack) -> None:
    commands = {tuple(w.args) for w in stack.services}
    assert {c[0] for c in commands} == set(SERVICE_SETTINGS)
    for lane in LANES:
        assert ("router", "--lane", lane) in commands
        for channel in CHANNELS:
            assert ("sender", "--channel", channel, "--lane", lane) in commands


def test_each_service_runs_as_the_charts_user_on_a_read_only_root(stack: Stack) -> None:
    for w in stack.services:
        pid = _container(stack.engine, "inspect", "--format", "{{.State.Pid}}", w.container)
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        assert uids == [str(w.run_as_user)] * 4, f"{w.name} runs as {uids}"
        assert w.run_as_user != 0 and w.read_only
        ro = _container(stack.engine, "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", w.container)
        assert ro == "true", w.name
        probe = "open('/opt/herald/probe', 'w')"
        done = subprocess.run(
            [stack.engine, "exec", w.container, "python", "-c", probe], capture_output=True, text=True
        )
        assert done.returncode != 0 and "Read-only file system" in done.stderr, (w.name, done.stderr)


async def _send_everywhere(base: str) -> tuple[str, str]:
    api_key = await seed_demo(base, ADMIN_TOKEN)
    body = {
        "to": {"contact_id": DEMO["contact_id"]},
        "template_id": DEMO["template_id"],
        "channels": list(CHANNELS),
        "data": {"film": "Dune: Part Two", "screen": 4, "seat": "F7"},
    }
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/v1/notifications", json=body) as resp:
            assert resp.status == 202, await resp.text()
            return str((await resp.json())["id"]), api_key


async def _statuses(base: str, api_key: str, nid: str) -> dict[str, str]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
        async with http.get(f"{base}/v1/notifications/{nid}") as resp:
            doc = await resp.json()
    return {ch: str(c.get("status")) for ch, c in doc.get("channels", {}).items()}


def test_email_sms_and_push_through_the_gateway_container_arrive(stack: Stack) -> None:
    nid, api_key = stack.loop.run(_send_everywhere(stack.gateway))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        mail = [m for m in stack.smtp.snapshot() if "Dune: Part Two" in m.subject]
        sms = [m for m in stack.twilio.messages if m.get("to") == DEMO["contact"]["phone"]]
        push = list(stack.fcm.messages)
        if mail and sms and push:
            break
        time.sleep(0.2)
    assert mail, "no email reached the SMTP peer"
    assert sms, "no SMS reached the Twilio peer"
    assert push, "no push reached the FCM peer"
    assert "Dune: Part Two" in json.dumps(push[0])
    deadline = time.monotonic() + 30
    done = {"sent", "delivered"}
    while time.monotonic() < deadline:
        statuses = stack.loop.run(_statuses(stack.gateway, api_key, nid))
        if set(statuses) == set(CHANNELS) and set(statuses.values()) <= done:
            break
        time.sleep(0.2)
    assert set(statuses) == set(CHANNELS) and set(statuses.values()) <= done, statuses


def test_every_service_logs_json_lines_only(stack: Stack) -> None:
    for w in stack.services:
        lines = [line for line in _logs(stack.engine, w).splitlines() if line.strip()]
        assert lines, f"{w.name} logged nothing"
        for line in lines:
            assert isinstance(json.loads(line), dict), f"{w.name}: {line[:200]}"


async def _load(base: str, api_key: str, count: int) -> None:
    body = {"to": {"email": "load@example.com"}, "content": {"email": {"subject": "Load", "text": "ok"}}}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:

        async def one(i: int) -> None:
            async with http.post(f"{base}/v1/notifications", json=body) as resp:
                assert resp.status == 202, await resp.text()

        for start in range(0, count, 50):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))


def _usage(engine_name: str, w: Workload) -> tuple[float, float, float]:
    """CPU seconds used so far, RSS and peak RSS in MB of the container's process (from /proc)."""
    pid = _container(engine_name, "inspect", "--format", "{{.State.Pid}}", w.container)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return cpu_s, int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


@pytest.mark.skipif(not os.environ.get("HERALD_IMAGE_STATS"), reason="set HERALD_IMAGE_STATS=<file>")
def test_record_cpu_and_memory_idle_and_under_a_small_load(stack: Stack) -> None:
    """Not a check: writes each container's CPU and memory, idle and right after 2,000 emails sent
    through the gateway, to $HERALD_IMAGE_STATS (the README's figures)."""
    time.sleep(10)
    idle = {w.name: _usage(stack.engine, w) for w in stack.services}
    time.sleep(10)
    idle_end = {w.name: _usage(stack.engine, w) for w in stack.services}
    api_key = stack.loop.run(seed_demo(stack.gateway, ADMIN_TOKEN))
    before = len(stack.smtp.snapshot())
    started = time.monotonic()
    stack.loop.run(_load(stack.gateway, api_key, 2000), timeout_s=300)
    while len(stack.smtp.snapshot()) < before + 2000 and time.monotonic() - started < 120:
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    loaded = {w.name: _usage(stack.engine, w) for w in stack.services}
    with open(os.environ["HERALD_IMAGE_STATS"], "w") as out:
        out.write(f"2000 emails in {elapsed:.1f} s ({2000 / elapsed:.0f}/s)\n")
        out.write("service: idle CPU %, idle RSS MB | CPU % under load, RSS MB, peak RSS MB\n")
        for name, (cpu0, rss0, _) in idle.items():
            idle_cpu = 100 * (idle_end[name][0] - cpu0) / 10
            cpu1, rss1, peak = loaded[name]
            load_cpu = 100 * (cpu1 - idle_end[name][0]) / elapsed
            out.write(f"{name}: {idle_cpu:.1f}% {rss0:.0f} | {load_cpu:.1f}% {rss1:.0f} {peak:.0f}\n")


def _stop(engine_name: str, w: Workload) -> tuple[float, str]:
    started = time.monotonic()
    _container(engine_name, "stop", "--time", str(w.grace_s), w.container)
    code = _container(engine_name, "inspect", "--format", "{{.State.ExitCode}}", w.container)
    return time.monotonic() - started, code


def test_stop_drains_each_service_to_exit_0_within_its_grace_period(stack: Stack) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(stack.services)) as pool:
        stops = pool.map(lambda w: _stop(stack.engine, w), stack.services)
        results = list(zip(stack.services, stops, strict=True))
    for w, (elapsed, code) in results:
        logs = _logs(stack.engine, w)[-1500:]
        assert code == "0", f"{w.name} exited {code} after SIGTERM:\n{logs}"
        assert elapsed < w.grace_s, f"{w.name} took {elapsed:.1f} s, grace period {w.grace_s} s"
