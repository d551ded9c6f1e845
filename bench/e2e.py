"""`make bench`: Herald end to end on this machine, each figure beside a reference measured in the same run.

  intake    single POST /v1/notifications vs an empty aiohttp handler (wrk if installed, else an aiohttp
            client); the :batch endpoint's notifications/s
  email     notifications through gateway → router → sender → SMTP peer: throughput, accept→peer latency
  sms/push  the same through the Twilio / FCM peers, beside one bare asyncio process rendering and POSTing
            straight to the same peer
  campaign  a personalised campaign from a segment, fanned out by the campaigns service and batched to the
            SendGrid peer, while transactional SMS keep flowing: its duration, transactional p99
            (bench/campaign.py)
  events    loyalty events in (POST /v1/events:batch) and the notifications they make out (bench/events.py)
  scheduler 1,000,000 due items released by the scheduler: items/s, its RSS (bench/events.py)
  memory    RSS of every service process

Every process (broker, Valkey, services, peers, load generator) shares this machine's cores: compare
the ratios, not the absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import events as event_phases
from bench.broker import SCENARIOS, broker_rss_mb
from bench.campaign import campaign
from bench.profile import PROFILED, Profiler
from bench.repeat import repeat_sms, sms_items
from bench.report import REPORT
from bench.stack import Arrivals, BenchStack, CpuMeter, pct, rss_mb, send_all, tenant_key
from herald_dev.infra import Managed, free_port, wait_port

BODY = b'{"to":{"email":"bench@example.com"},"content":{"email":{"subject":"Hi {{ data.n }}","text":"x"}}}'


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
    return float(match.group(1)) if match else None


async def client_rate(url: str, headers: dict[str, str], body: bytes, seconds: float) -> float:
    done, deadline = 0, time.monotonic() + seconds
    async with aiohttp.ClientSession(headers=headers) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with http.post(url, data=body) as resp:
                    await resp.read()
                    done += resp.status == 202

        await asyncio.gather(*(worker() for _ in range(32)))
    return done / seconds


async def intake(stack: BenchStack, http: aiohttp.ClientSession, base: str, seconds: int) -> None:
    ref_port = free_port()
    ref = Managed(
        "empty-aiohttp",
        [sys.executable, "-m", "bench.empty_server", str(ref_port)],
        log=stack.work / "empty.log",
    ).start()
    stack.infra.append(ref)
    wait_port("127.0.0.1", ref_port)
    key = await tenant_key(http, base)
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    tool = "wrk" if shutil.which("wrk") else "aiohttp client"
    ref_rate = wrk_rate(f"http://127.0.0.1:{ref_port}/v1/notifications", auth, BODY, seconds, stack.work)
    meter = CpuMeter(stack)
    meter.start()
    if REPORT.profiler:
        REPORT.profiler.start("intake", {"gateway-intake": stack.services["gateway-intake"].pid})
    rate = wrk_rate(f"{base}/v1/notifications", auth, BODY, seconds, stack.work)
    if ref_rate is None or rate is None:
        ref_rate = await client_rate(f"http://127.0.0.1:{ref_port}/v1/notifications", auth, BODY, seconds)
        meter.start()
        rate = await client_rate(f"{base}/v1/notifications", auth, BODY, seconds)
    requests = max(1, int(rate * seconds))
    REPORT.figure("single POST (per request)", requests, rate, meter.used(requests))
    if REPORT.profiler:
        REPORT.profiles["intake"] = REPORT.profiler.stop(meter.used(requests))
        print("  profile of the single-POST gateway (py-spy)")
        print("\n".join(p.text() for p in REPORT.profiles["intake"]))
    ref.stop()
    items = [
        {"to": {"email": f"b{i}@example.com"}, "content": {"email": {"subject": "s", "text": "t"}}}
        for i in range(1000)
    ]
    accepted, deadline = 0, time.monotonic() + seconds

    async def batch_worker() -> None:
        nonlocal accepted
        while time.monotonic() < deadline:
            try:
                async with http.post(
                    f"{base}/v1/notifications:batch", json={"notifications": items}, headers=auth
                ) as resp:
                    await resp.read()
                    accepted += 1000 if resp.status == 202 else 0
            except aiohttp.ClientConnectionError:
                continue  # a pooled connection the gateway closed after its idle keep-alive: never sent

    started = time.monotonic()
    await asyncio.gather(*(batch_worker() for _ in range(4)))
    batch_rate = accepted / (time.monotonic() - started)
    print(f"intake ({tool}, 32 connections, {seconds}s each)")
    print(f"  empty aiohttp handler (reference)          {ref_rate:8.0f} req/s")
    print(
        f"  POST /v1/notifications (202 after acks=all) {rate:7.0f} req/s   ratio {rate / ref_rate:.2f}  "
        "(bar ≥ 0.5)"
    )
    print(f"  POST /v1/notifications:batch, 1,000 each   {batch_rate:8.0f} notifications/s  (bar ≥ 50,000)")


def _report(title: str, arrivals: Arrivals, accepted: dict[int, float], n: int) -> float:
    lat = [(arrivals.seen[i] - accepted[i]) * 1000 for i in arrivals.seen if i in accepted]
    rate = arrivals.rate()
    print(
        f"  {title:38s} {len(arrivals.seen)}/{n} delivered, {rate:7.0f} msg/s; accept→peer ms p50 "
        f"{pct(lat, 50):.0f} p95 {pct(lat, 95):.0f} p99 {pct(lat, 99):.0f}"
    )
    return rate


async def through_herald(
    stack: BenchStack,
    http: aiohttp.ClientSession,
    base: str,
    key: str,
    arrivals: Arrivals,
    items: list[dict],
    timeout_s: float,
    label: str = "",
) -> dict[int, float]:
    arrivals.reset()
    meter = CpuMeter(stack)
    meter.start()
    profiler = REPORT.profiler if label in PROFILED else None
    if profiler:
        profiler.start(label, {name: p.pid for name, p in stack.services.items() if p.alive()})
    accepted = await send_all(http, base, key, items)
    await arrivals.wait(len(items), timeout_s)
    await asyncio.sleep(0.5)  # let the tracker finish its share
    scenario = REPORT.scenario(label, arrivals, accepted, len(items), meter.used(len(items)))
    scenario.broker_mb = broker_rss_mb(stack)
    print("    " + meter.report(len(items)) + f"; broker RSS {scenario.broker_mb:.0f} MB")
    if profiler:
        REPORT.profiles[label] = profiler.stop(scenario.cpu)
        print("  profile (py-spy, own time and inclusive by library; share of samples, CPU ms per message)")
        print("\n".join(p.text() for p in REPORT.profiles[label]))
    return accepted


async def reference(stack: BenchStack, kind: str, arrivals: Arrivals, n: int, timeout_s: float) -> float:
    arrivals.reset()
    args = (
        ["--url", stack.urls["twilio"], "--sid", stack.sid, "--token", stack.token]
        if kind == "sms"
        else [
            "--url",
            stack.urls["fcm"],
            "--token-url",
            stack.urls["fcm"] + "/token",
            "--credentials",
            str(stack.credentials),
            "--project",
            "bench",
        ]
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.reference", kind, "--n", str(n), *args, stdout=asyncio.subprocess.PIPE
    )
    await arrivals.wait(n, timeout_s)
    out, _ = await proc.communicate()
    cpu_ms = 1000 * float(out.split()[-1]) / n if out.startswith(b"cpu_s") else float("nan")
    REPORT.references[kind] = (arrivals.rate(), cpu_ms)
    print(
        f"  {'bare asyncio process (reference)':38s} {len(arrivals.seen)}/{n} delivered, "
        f"{arrivals.rate():7.0f} msg/s; CPU ms per message {cpu_ms:.2f}"
    )
    return arrivals.rate()


async def channels(
    stack: BenchStack, http: aiohttp.ClientSession, base: str, n: int, timeout_s: float
) -> None:
    key = await tenant_key(http, base)
    email = Arrivals(lambda i: [m.subject for m in stack.capture.since(i)])
    items = [
        {
            "to": {"email": f"e{i}@example.com"},
            "content": {"email": {"subject": "Booking n={{ data.n }}", "text": "Seat {{ data.n }}"}},
            "data": {"n": i},
        }
        for i in range(n)
    ]
    print(f"\nend to end, {n} notifications per channel (1 router, 1 sender per channel, 12 partitions)")
    _report(
        "email → SMTP peer",
        email,
        await through_herald(stack, http, base, key, email, items, timeout_s, label="email"),
        n,
    )

    await SCENARIOS.before(stack, "sms")

    sms = Arrivals(lambda i: [m["text"] for m in stack.twilio.messages[i:]])
    ref = await reference(stack, "sms", sms, n, timeout_s)
    items = sms_items(n)
    rate = _report(
        "sms → Twilio peer",
        sms,
        await through_herald(stack, http, base, key, sms, items, timeout_s, label="sms"),
        n,
    )
    print(f"  {'':38s} ratio to reference {rate / ref:.2f}  (bar ≥ 0.4)")

    await SCENARIOS.before(stack, "push")
    push = Arrivals(lambda i: [m["body"] for m in stack.fcm.messages[i:]])
    ref = await reference(stack, "push", push, n, timeout_s)
    items = [
        {
            "to": {"push_token": f"bench-token-{i:08d}"},
            "content": {"push": {"title": "Booked", "body": "Seat F7 is yours n={{ data.n }}"}},
            "data": {"n": i},
        }
        for i in range(n)
    ]
    rate = _report(
        "push → FCM peer",
        push,
        await through_herald(stack, http, base, key, push, items, timeout_s, label="push"),
        n,
    )
    print(f"  {'':38s} ratio to reference {rate / ref:.2f}  (bar ≥ 0.4)")


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    REPORT.capture_stdout()
    SCENARIOS.reset = not args.no_reset
    if args.profile:
        REPORT.profiler = Profiler(args.out / "profile")
    stack = BenchStack(work)
    await stack.start()
    try:
        gw_port, in_port = free_port(), free_port()
        procs = [
            stack.spawn("gateway", ["gateway"], HERALD_HTTP_PORT=str(gw_port)),
            stack.spawn(
                "gateway-intake",
                ["gateway"],
                HERALD_HTTP_PORT=str(in_port),
                HERALD_KAFKA_TOPIC_PREFIX="intake",
            ),
            stack.spawn("router-transactional", ["router", "--lane", "transactional"]),
            stack.spawn("router-bulk", ["router", "--lane", "bulk"]),
            stack.spawn("sender-email", ["sender", "--channel", "email", "--lane", "transactional"]),
            stack.spawn("sender-sms", ["sender", "--channel", "sms", "--lane", "transactional"]),
            stack.spawn("sender-push", ["sender", "--channel", "push", "--lane", "transactional"]),
            stack.spawn(
                "sender-email-bulk",
                ["sender", "--channel", "email", "--lane", "bulk"],
                HERALD_EMAIL_PROVIDERS="sendgrid",
                HERALD_CONSUMER_CONCURRENCY="1000",
                HERALD_CONSUMER_MAX_BATCH="1000",
            ),
            stack.spawn("tracker", ["tracker"]),
            stack.spawn("scheduler", ["scheduler"]),
            stack.spawn("campaigns", ["campaigns"], HERALD_CAMPAIGNS_BATCH_MAX="5000"),
        ]
        for proc in procs:
            await stack.ready(proc)
        import os

        print(f"Herald benchmark — {os.cpu_count()} cores, every process on this machine (logs in {work})\n")
        async with aiohttp.ClientSession() as http:
            if "intake" in args.only:
                await intake(stack, http, f"http://127.0.0.1:{in_port}", args.seconds)
            stack.services.pop("gateway-intake").stop()
            base = f"http://127.0.0.1:{gw_port}"
            if "channels" in args.only:
                await SCENARIOS.before(stack, "email")
                await channels(stack, http, base, args.messages, args.timeout)
            if "campaign" in args.only:
                await SCENARIOS.before(stack, "campaign")
                await campaign(stack, http, base, args.campaign, args.timeout)
            if "events" in args.only:
                await SCENARIOS.before(stack, "events")
                await event_phases.events(stack, http, base, args.events, args.timeout)
            if "repeat" in args.only and args.repeat > 0:
                await SCENARIOS.before(stack, "the repeated SMS runs")
                await repeat_sms(
                    stack,
                    http,
                    base,
                    through_herald,
                    n=args.repeat_messages,
                    times=args.repeat,
                    timeout_s=args.timeout,
                    reset_each=args.repeat_reset,
                )
        if "scheduler" in args.only:
            await SCENARIOS.before(stack, "scheduler")
            await event_phases.scheduler(stack, args.scheduler_items, args.timeout)
        print("\nmemory after the load (RSS; bar < 150 MB each)")
        print(
            "  "
            + "  ".join(f"{name} {rss_mb(p.pid):.0f} MB" for name, p in stack.services.items() if p.alive())
        )
    finally:
        await stack.stop()
        print(f"\nreport: {REPORT.write(args.out / 'report.html')}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="duration of each intake measurement")
    parser.add_argument("--messages", type=int, default=3000, help="notifications per channel end to end")
    parser.add_argument(
        "--campaign",
        type=int,
        default=20_000,
        help="recipients of the campaign (the bar is set at 1,000,000)",
    )
    parser.add_argument("--events", type=int, default=5000, help="loyalty events posted in the events phase")
    parser.add_argument(
        "--scheduler-items", type=int, default=1_000_000, help="due items the scheduler releases"
    )
    parser.add_argument("--timeout", type=float, default=300, help="give up waiting for a phase after this")
    parser.add_argument(
        "--only",
        default="intake,channels,campaign,events,repeat,scheduler",
        help="comma-separated phases to run",
    )
    parser.add_argument("--repeat", type=int, default=5, help="SMS runs in a row on one stack (0: none)")
    parser.add_argument("--repeat-messages", type=int, default=20000, help="SMS per repeated run")
    parser.add_argument("--repeat-reset", action="store_true", help="a fresh broker before each repeated run")
    parser.add_argument(
        "--no-reset", action="store_true", help="keep one broker for every scenario (no fresh broker)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy flame graphs of every hot process during the SMS runs"
    )
    parser.add_argument("--out", type=Path, default=Path("var/bench"), help="where the report is written")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
