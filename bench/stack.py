"""What `make bench` runs: the embedded broker and Valkey, the provider peers (in the benchmark's own
process, polled for arrivals), and every Herald service as its own process."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from herald_common.kafka import create_topics
from herald_common.topics import Topics
from herald_dev.infra import Managed, free_port, start_broker, start_valkey
from herald_dev.peers import FcmPeer, SendGridPeer, TwilioPeer, make_test_service_account, start_peer
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer

ADMIN = "bench-admin-token-0123456789"
_N = re.compile(r"n=(\d+)")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """CPU seconds each process spent between start() and report(): where a phase's time went."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.before: dict[str, float] = {}

    def _procs(self) -> dict[str, int]:
        procs = {name: p.pid for name, p in self.stack.services.items() if p.alive()}
        procs.update({p.name: p.pid for p in self.stack.infra if p.alive()})
        procs["bench+peers"] = os.getpid()
        return procs

    def start(self) -> None:
        self.before = {name: cpu_s(pid) for name, pid in self._procs().items()}

    def used(self, per: int) -> dict[str, float]:
        """CPU ms per item of each process that spent more than 50 ms since start(), busiest first."""
        used = {name: cpu_s(pid) - self.before.get(name, 0.0) for name, pid in self._procs().items()}
        busy = sorted(((v, k) for k, v in used.items() if v > 0.05), reverse=True)
        return {k: 1000 * v / per for v, k in busy}

    def report(self, per: int, unit: str = "message") -> str:
        return f"CPU ms per {unit}: " + ", ".join(f"{k} {v:.2f}" for k, v in self.used(per).items())


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


@dataclass
class Arrivals:
    """Arrival time of each message index at a peer, found by polling the peer's capture list.

    ``source(start)`` gives the texts captured from index ``start`` on (each carries "n=<index>"):
    each poll reads only what arrived since the last one, so polling costs the bench process little
    however long the capture list grows."""

    source: Callable[[int], list[str]]
    seen: dict[int, float] = field(default_factory=dict)
    _read: int = 0

    def poll(self) -> None:
        texts = self.source(self._read)
        now = time.monotonic()
        for text in texts:
            match = _N.search(text or "")
            if match:
                self.seen.setdefault(int(match.group(1)), now)
        self._read += len(texts)

    async def wait(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < n and time.monotonic() < deadline:
            self.poll()
            await asyncio.sleep(0.005)

    def reset(self) -> None:
        self.seen.clear()
        self._read = len(self.source(0))  # once per run: the peer may have cleared its list

    def rate(self) -> float:
        if len(self.seen) < 2:
            return float("nan")
        times = sorted(self.seen.values())
        return (len(times) - 1) / max(1e-9, times[-1] - times[0])


class BenchStack:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.infra: list[Managed] = []
        self.services: dict[str, Managed] = {}
        self.runners: list[web.AppRunner] = []
        self.env: dict[str, str] = {}
        self.smtp: SmtpPeer | None = None
        self.capture = SmtpCapture()
        self.sid, self.token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        self.twilio = TwilioPeer(self.sid, self.token, status_callbacks=False)
        self.credentials = work / "fcm.json"
        self.fcm = FcmPeer(
            [make_test_service_account(self.credentials, project_id="bench")], project_id="bench"
        )
        self.sendgrid_key = "SG." + secrets.token_urlsafe(24)
        self.sendgrid = SendGridPeer(self.sendgrid_key, keep=False)
        self.urls: dict[str, str] = {}

    async def start(self) -> None:
        kport, rport = free_port(), free_port()
        self.infra.append(start_broker(kport, log=self.work / "kafka.log"))
        self.infra.append(
            start_valkey(rport, self.work / "redis", appendonly=True, log=self.work / "valkey.log")
        )
        self.smtp = SmtpPeer(free_port(), self.capture).start()
        for name, app in (
            ("twilio", self.twilio.app()),
            ("fcm", self.fcm.app()),
            ("sendgrid", self.sendgrid.app()),
        ):
            runner, url = await start_peer(app)
            self.runners.append(runner)
            self.urls[name] = url
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env.update(
            {
                "HERALD_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
                "HERALD_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
                "HERALD_LOG_LEVEL": "warning",
                "HERALD_ADMIN_TOKEN": ADMIN,
                "HERALD_TENANT_DEFAULT_RATE_PER_S": "0",  # the bench measures capacity, not a quota
                "HERALD_SMTP_HOST": "127.0.0.1",
                "HERALD_SMTP_PORT": str(self.smtp.port),
                "HERALD_SMTP_POOL_SIZE": "16",
                "HERALD_TWILIO_BASE_URL": self.urls["twilio"],
                "HERALD_TWILIO_ACCOUNT_SID": self.sid,
                "HERALD_TWILIO_AUTH_TOKEN": self.token,
                "HERALD_TWILIO_FROM": "+14155550100",
                "HERALD_FCM_BASE_URL": self.urls["fcm"],
                "HERALD_FCM_TOKEN_URL": self.urls["fcm"] + "/token",
                "HERALD_FCM_CREDENTIALS_FILE": str(self.credentials),
                "HERALD_FCM_PROJECT_ID": "bench",
                "HERALD_SENDGRID_BASE_URL": self.urls["sendgrid"],
                "HERALD_SENDGRID_API_KEY": self.sendgrid_key,
            }
        )
        self.env = env
        for prefix in ("herald", "intake"):
            await create_topics(env["HERALD_KAFKA_BOOTSTRAP"], Topics(prefix).all(), 12)

    def spawn(self, name: str, args: list[str], **extra: str) -> Managed:
        env = {**self.env, "HERALD_HEALTH_PORT": str(free_port()), **extra}
        proc = Managed(
            name, [sys.executable, "-m", "herald_cli", *args], env=env, log=self.work / f"{name}.log"
        ).start()
        self.services[name] = proc
        return proc

    async def ready(self, proc: Managed, timeout_s: float = 60) -> None:
        assert proc.env is not None
        port = (
            proc.env.get("HERALD_HTTP_PORT") if proc.argv[-1] == "gateway" else proc.env["HERALD_HEALTH_PORT"]
        )
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited; see {self.work / (proc.name + '.log')}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{proc.name} not ready")

    async def stop(self) -> None:
        for proc in self.services.values():
            proc.signal(15)
        for proc in self.services.values():
            await asyncio.to_thread(proc.stop, 20)
        for runner in self.runners:
            await runner.cleanup()
        if self.smtp is not None:
            self.smtp.stop()
        for proc in reversed(self.infra):
            proc.stop()


async def tenant_key(http: aiohttp.ClientSession, base: str) -> str:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with http.post(f"{base}/admin/v1/tenants", json={"name": "Bench"}, headers=admin) as resp:
        tenant = await resp.json()
    async with http.post(f"{base}/admin/v1/tenants/{tenant['id']}/api-keys", headers=admin) as resp:
        return str((await resp.json())["api_key"])


async def send_all(
    http: aiohttp.ClientSession, base: str, key: str, items: list[dict], chunk: int = 500
) -> dict[int, float]:
    """POST items through :batch; returns index → time the API answered 202 for it."""
    accepted: dict[int, float] = {}
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        async with http.post(
            f"{base}/v1/notifications:batch",
            json={"notifications": part},
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            body = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"batch refused: {resp.status} {body}")
        now = time.monotonic()
        for i in range(start, start + len(part)):
            accepted[i] = now
    return accepted
