"""`make bench`: Herald end to end on this machine, each figure beside a reference measured in the same run.

  intake     single POST /v1/notifications rate vs an empty aiohttp handler (wrk if installed, else an
             aiohttp client), and the :batch endpoint's notifications/s
  email      N notifications through gateway → router → sender → SMTP peer: throughput and
             accept-to-delivery latency percentiles measured at the peer
  memory     RSS of every service process after the load

Everything runs on loopback: the embedded broker and Redis-protocol server, an aiosmtpd peer, every
service as its own process. Figures vary with the machine's load; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from herald_common.ids import delivery_id
from herald_common.kafka import create_topics
from herald_common.topics import Topics
from herald_dev.infra import Managed, free_port, start_broker, start_valkey, wait_port
from herald_dev.smtp_peer import SmtpCapture, SmtpPeer

ADMIN = "bench-admin-token-0123456789"
BODY = b'{"to":{"email":"bench@example.com"},"content":{"email":{"subject":"Hi {{ data.n }}","text":"x"}}}'


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[Managed] = []
        self.services: dict[str, Managed] = {}

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Managed:
        proc = Managed(
            name, [sys.executable, "-m", "herald_cli", *args], env=env, log=self.work / f"{name}.log"
        ).start()
        self.services[name] = proc
        return proc

    def stop(self) -> None:
        for proc in [*self.services.values(), *reversed(self.procs)]:
            proc.stop(15)


async def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(url)


def wrk_rate(url: str, headers: dict[str, str], body: bytes, seconds: int, work: Path) -> float | None:
    if shutil.which("wrk") is None:
        return None
    script = work / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = [[{body.decode()}]]"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        print(f"    warning: {non2xx.group(1)} non-2xx responses from {url}")
    return float(match.group(1)) if match else None


async def client_rate(url: str, headers: dict[str, str], body: bytes, seconds: float) -> float:
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers={**headers, "Content-Type": "application/json"}) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with http.post(url, data=body) as resp:
                    await resp.read()
                    done += resp.status == 202

        await asyncio.gather(*(worker() for _ in range(32)))
    return done / seconds


async def tenant_key(http: aiohttp.ClientSession, base: str) -> str:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with http.post(f"{base}/admin/v1/tenants", json={"name": "Bench"}, headers=admin) as resp:
        tenant = await resp.json()
    async with http.post(f"{base}/admin/v1/tenants/{tenant['id']}/api-keys", headers=admin) as resp:
        return str((await resp.json())["api_key"])


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    bench = Bench(work)
    kport, rport = free_port(), free_port()
    bench.procs.append(start_broker(kport, log=work / "kafka.log"))
    bench.procs.append(start_valkey(rport, work / "redis", appendonly=True, log=work / "valkey.log"))
    capture = SmtpCapture()
    peer = SmtpPeer(free_port(), capture).start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    base_env.update(
        {
            "HERALD_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
            "HERALD_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
            "HERALD_LOG_LEVEL": "warning",
            "HERALD_ADMIN_TOKEN": ADMIN,
            "HERALD_SMTP_HOST": "127.0.0.1",
            "HERALD_SMTP_PORT": str(peer.port),
            "HERALD_SMTP_POOL_SIZE": "16",
        }
    )
    try:
        for prefix in ("herald", "intake"):
            await create_topics(base_env["HERALD_KAFKA_BOOTSTRAP"], Topics(prefix).all(), 12)
        # The pipeline under test.
        gw_port = free_port()
        bench.spawn("gateway", ["gateway"], {**base_env, "HERALD_HTTP_PORT": str(gw_port)})
        for name, cmd in [
            ("router", ["router", "--lane", "transactional"]),
            ("sender-email", ["sender", "--channel", "email", "--lane", "transactional"]),
            ("tracker", ["tracker"]),
        ]:
            bench.spawn(name, cmd, {**base_env, "HERALD_HEALTH_PORT": str(free_port())})
        # Intake alone: a gateway whose topics nobody consumes, beside the empty-handler reference.
        in_port, ref_port = free_port(), free_port()
        intake = bench.spawn(
            "gateway-intake",
            ["gateway"],
            {**base_env, "HERALD_HTTP_PORT": str(in_port), "HERALD_KAFKA_TOPIC_PREFIX": "intake"},
        )
        ref = Managed(
            "empty-aiohttp",
            [sys.executable, "-m", "bench.empty_server", str(ref_port)],
            log=work / "empty.log",
        ).start()
        bench.procs.append(ref)
        wait_port("127.0.0.1", ref_port)
        base, intake_base = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{in_port}"
        await wait_ready(f"{base}/readyz")
        await wait_ready(f"{intake_base}/readyz")
        for name, proc in bench.services.items():
            if name.startswith(("router", "sender", "tracker")):
                port = proc.env["HERALD_HEALTH_PORT"] if proc.env else ""
                await wait_ready(f"http://127.0.0.1:{port}/readyz")
        print(f"Herald benchmark — {os.cpu_count()} cores, every process on this machine (work dir {work})\n")

        async with aiohttp.ClientSession() as http:
            key = await tenant_key(http, intake_base)
            auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            tool = "wrk" if shutil.which("wrk") else "aiohttp client"
            ref_rate = wrk_rate(
                f"http://127.0.0.1:{ref_port}/v1/notifications", auth, BODY, args.seconds, work
            )
            herald_rate = wrk_rate(f"{intake_base}/v1/notifications", auth, BODY, args.seconds, work)
            if ref_rate is None or herald_rate is None:
                ref_rate = await client_rate(
                    f"http://127.0.0.1:{ref_port}/v1/notifications", auth, BODY, args.seconds
                )
                herald_rate = await client_rate(f"{intake_base}/v1/notifications", auth, BODY, args.seconds)
            print(f"intake ({tool}, 32 connections, {args.seconds}s)")
            print(f"  empty aiohttp handler (reference)   {ref_rate:10.0f} req/s")
            print(
                f"  POST /v1/notifications (202 after Kafka ack) {herald_rate:5.0f} req/s   "
                f"ratio {herald_rate / ref_rate:.2f} (bar ≥ 0.5)"
            )

            items = [
                {"to": {"email": f"b{i}@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}}
                for i in range(1000)
            ]
            batch_body = {"notifications": items}
            accepted = 0
            deadline = time.monotonic() + args.seconds

            async def batch_worker() -> None:
                nonlocal accepted
                while time.monotonic() < deadline:
                    async with http.post(
                        f"{intake_base}/v1/notifications:batch", json=batch_body, headers=auth
                    ) as resp:
                        await resp.read()
                        if resp.status == 202:
                            accepted += 1000

            started = time.monotonic()
            await asyncio.gather(*(batch_worker() for _ in range(4)))
            batch_rate = accepted / (time.monotonic() - started)
            print(
                f"  POST /v1/notifications:batch (1,000 per request, 4 clients) {batch_rate:8.0f} "
                "notifications/s "
                "(bar ≥ 50,000)"
            )
            intake_rss = rss_mb(intake.pid)
            intake.stop()

            # End to end: API in, SMTP peer out.
            key = await tenant_key(http, base)
            auth = {"Authorization": f"Bearer {key}"}
            n = args.messages
            accepted_at: dict[str, float] = {}
            t0 = time.monotonic()
            for start in range(0, n, 500):
                chunk = [
                    {
                        "to": {"email": f"e{i}@example.com"},
                        "content": {
                            "email": {"subject": "Booking {{ data.n }}", "text": "Seat {{ data.n }}"}
                        },
                        "data": {"n": i},
                    }
                    for i in range(start, min(n, start + 500))
                ]
                async with http.post(
                    f"{base}/v1/notifications:batch", json={"notifications": chunk}, headers=auth
                ) as resp:
                    body = await resp.json()
                    now = time.monotonic()
                    for i, item in zip(range(start, start + len(chunk)), body["notifications"], strict=True):
                        accepted_at[delivery_id(item["id"], "email", f"e{i}@example.com")] = now
            seen: dict[str, float] = {}
            deadline = time.monotonic() + args.timeout
            while len(seen) < n and time.monotonic() < deadline:
                for m in capture.snapshot()[len(seen) :]:
                    seen.setdefault(m.headers.get("X-Herald-Delivery-Id", ""), time.monotonic())
                await asyncio.sleep(0.01)
            elapsed = max(seen.values()) - t0 if seen else float("nan")
            lat = [(seen[d] - accepted_at[d]) * 1000 for d in seen if d in accepted_at]
            print(f"\nemail end to end ({n} notifications, SMTP peer, 1 router, 1 sender, 12 partitions)")
            print(f"  delivered {len(seen)}/{n} in {elapsed:.1f}s = {len(seen) / elapsed:.0f} emails/s")
            print(
                f"  accept→SMTP latency ms: p50 {pct(lat, 50):.0f}  p95 {pct(lat, 95):.0f}  "
                f"p99 {pct(lat, 99):.0f}  max {max(lat, default=float('nan')):.0f}"
            )
            print("\nmemory after load (RSS, bar < 150 MB each)")
            print(f"  {'gateway-intake':16s} {intake_rss:6.0f} MB")
            for name, proc in bench.services.items():
                if proc.alive():
                    print(f"  {name:16s} {rss_mb(proc.pid):6.0f} MB")
    finally:
        peer.stop()
        bench.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="duration of each intake measurement")
    parser.add_argument("--messages", type=int, default=5000, help="notifications sent end to end")
    parser.add_argument(
        "--timeout", type=float, default=180, help="give up waiting for deliveries after this"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
