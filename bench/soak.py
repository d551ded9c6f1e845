"""`make soak`: Herald under steady load for a long while (20 minutes by default), reporting every
interval the delivery rate, the accept→peer latency (p50/p99) of that interval and every service's RSS,
so memory growth and latency drift over time show. Not part of CI (it takes as long as it is told to).

The load is transactional SMS through the Twilio-format peer at a fixed rate (``--rate``, by default
about half of what this 2-core machine delivers), sent as single POSTs by a bounded pool of clients.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.stack import Arrivals, BenchStack, pct, rss_mb, tenant_key
from herald_dev.infra import free_port


async def _drive(
    http: aiohttp.ClientSession, base: str, key: str, rate: float, until: float, accepted: dict[int, float]
) -> None:
    """POST one SMS every 1/rate seconds until ``until`` (bounded in-flight requests)."""
    gate = asyncio.Semaphore(64)
    headers = {"Authorization": f"Bearer {key}"}

    async def one(n: int) -> None:
        body = {
            "to": {"phone": f"+1415555{n % 10000:04d}"},  # many members: one key would serialise
            "content": {"sms": {"text": "Your code n={{ data.n }}"}},
            "data": {"n": n},
        }
        async with gate, http.post(f"{base}/v1/notifications", json=body, headers=headers) as resp:
            if resp.status == 202:
                accepted[n] = time.monotonic()

    tasks: set[asyncio.Task[None]] = set()
    n, start = 0, time.monotonic()
    while time.monotonic() < until:
        n += 1
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="herald-soak-"))
    stack = BenchStack(work)
    await stack.start()
    try:
        port = free_port()
        procs = [
            stack.spawn("gateway", ["gateway"], HERALD_HTTP_PORT=str(port)),
            stack.spawn("router", ["router", "--lane", "transactional"]),
            stack.spawn("sender-sms", ["sender", "--channel", "sms", "--lane", "transactional"]),
            stack.spawn("tracker", ["tracker"]),
            stack.spawn("scheduler", ["scheduler"]),
        ]
        for proc in procs:
            await stack.ready(proc)
        base = f"http://127.0.0.1:{port}"
        arrivals = Arrivals(lambda i: [m["text"] for m in stack.twilio.messages[i:]])
        accepted: dict[int, float] = {}
        print(f"Herald soak: {args.rate:g} SMS/s for {args.minutes:g} min (logs in {work})")
        print(f"{'min':>5} {'delivered/s':>11} {'p50 ms':>7} {'p99 ms':>7}  RSS MB")
        async with aiohttp.ClientSession() as http:
            key = await tenant_key(http, base)
            until = time.monotonic() + args.minutes * 60
            driver = asyncio.create_task(_drive(http, base, key, args.rate, until, accepted))
            started = time.monotonic()

            async def watch() -> None:  # arrival times to within 20 ms, not to the report interval
                while not driver.done():
                    arrivals.poll()
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch())
            while not driver.done():
                await asyncio.sleep(args.interval)
                arrivals.poll()
                window = dict(arrivals.seen)
                arrivals.seen.clear()
                lat = [(t - accepted[i]) * 1000 for i, t in window.items() if i in accepted]
                rss = "  ".join(
                    f"{name} {rss_mb(p.pid):.0f}" for name, p in stack.services.items() if p.alive()
                )
                print(
                    f"{(time.monotonic() - started) / 60:5.1f} {len(window) / args.interval:11.0f} "
                    f"{pct(lat, 50):7.0f} {pct(lat, 99):7.0f}  {rss}",
                    flush=True,
                )
            await driver
            await watcher
    finally:
        await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="how long to keep the load on")
    parser.add_argument("--rate", type=float, default=700.0, help="SMS per second offered")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between report lines")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
