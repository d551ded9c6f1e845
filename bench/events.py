"""`make bench` phases for loyalty events and the scheduler:

events     POST /v1/events:batch (1,000 events each) for a trigger that sends one SMS per event:
           events/s accepted by the API, and notifications/s arriving at the Twilio peer
scheduler  1,000,000 due items loaded into the delayed set through DelayQueue.put_many, then released
           by a fresh `herald scheduler` process onto a topic: items/s and the scheduler's RSS
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import redis.asyncio as aioredis

from bench.stack import ADMIN, Arrivals, BenchStack, CpuMeter, pct, rss_mb
from herald_common.delayed import DelayedRecord, DelayQueue
from herald_common.kafka import create_topics
from herald_common.redisio import Keys

SMS = {"category": "transactional", "sms": {"text": "You earned {{ data.points }} points n={{ data.n }}"}}
# About the size of a notification request record, which is what the scheduler mostly holds.
VALUE = (
    b'{"id":"n_0000000000000000000000000000000000000000","tenant_id":"bench","lane":"bulk",'
    b'"accepted_at":1796032800.0,"to":{"contact_id":"member-00000000"},"template_id":"weekend-offer",'
    b'"data":{"film":"Dune: Part Two","points":500},"category":"marketing","send_at":1796032800.0}'
)


async def _tenant(http: aiohttp.ClientSession, base: str) -> str:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with http.post(f"{base}/admin/v1/tenants", json={"name": "Events"}, headers=admin) as resp:
        tenant = await resp.json()
    async with http.post(f"{base}/admin/v1/tenants/{tenant['id']}/api-keys", headers=admin) as resp:
        key = str((await resp.json())["api_key"])
    auth = {"Authorization": f"Bearer {key}"}
    async with http.put(f"{base}/v1/templates/points", json=SMS, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
    trigger = {"rules": [{"template_id": "points", "channels": ["sms"]}]}
    async with http.put(f"{base}/v1/triggers/points.earned", json=trigger, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
    return key


async def events(stack: BenchStack, http: aiohttp.ClientSession, base: str, n: int, timeout_s: float) -> None:
    key = await _tenant(http, base)
    now = datetime.now(UTC).isoformat()
    items = [
        {
            "type": "points.earned",
            "contact_id": f"member-{i}",
            "data": {"points": 500, "n": i},
            "occurred_at": now,
            "contact": {"phone": f"+4479112{i % 100000:05d}"},
        }
        for i in range(n)
    ]
    sms = Arrivals(lambda i: [m["text"] for m in stack.twilio.messages[i:]])
    sms.reset()
    meter = CpuMeter(stack)
    meter.start()
    accepted: dict[int, float] = {}
    started = time.monotonic()
    for start in range(0, n, 1000):
        async with http.post(
            f"{base}/v1/events:batch",
            json={"events": items[start : start + 1000]},
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            body = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"event batch refused: {resp.status} {body}")
        at = time.monotonic()
        accepted.update({i: at for i in range(start, min(n, start + 1000))})
    intake_s = time.monotonic() - started
    await sms.wait(n, timeout_s)
    out_s = max(1e-9, max(sms.seen.values(), default=started) - started)
    lat = [(sms.seen[i] - accepted[i]) * 1000 for i in sms.seen if i in accepted]
    print(
        f"\nloyalty events: {n} events through POST /v1/events:batch, one SMS each "
        "(trigger → router → sender)"
    )
    print(f"  events in:          {n / intake_s:8.0f} events/s accepted (202 after acks=all)")
    print(
        f"  notifications out:  {len(sms.seen)}/{n} at the Twilio peer in {out_s:.1f}s = "
        f"{len(sms.seen) / out_s:.0f}/s overall, {sms.rate():.0f}/s between first and last; "
        f"accept→peer ms p50 {pct(lat, 50):.0f} "
        f"p99 {pct(lat, 99):.0f}"
    )
    print("    " + meter.report(n, "event"))


async def scheduler(stack: BenchStack, n: int, timeout_s: float) -> None:
    prefix = "schedbench"
    topic = f"{prefix}.released"
    await create_topics(stack.env["HERALD_KAFKA_BOOTSTRAP"], [topic], 12)
    redis = aioredis.from_url(stack.env["HERALD_REDIS_URL"])
    keys = Keys(prefix)
    queue = DelayQueue(redis, keys)
    started, due_at = time.monotonic(), time.time()
    for start in range(0, n, 5000):
        await queue.put_many(
            [
                (f"item:{i}", DelayedRecord(topic=topic, value=VALUE, key=f"member-{i}".encode()), due_at)
                for i in range(start, min(n, start + 5000))
            ]
        )
    load_s = time.monotonic() - started
    info = await redis.info("memory")
    print(
        f"\nscheduler: {n} due items loaded with DelayQueue.put_many in {load_s:.1f}s "
        f"(Valkey used_memory {info['used_memory'] / 2**20:.0f} MB)"
    )
    proc = stack.spawn(
        "scheduler-bench", ["scheduler"], HERALD_REDIS_PREFIX=prefix, HERALD_KAFKA_TOPIC_PREFIX=prefix
    )
    meter = CpuMeter(stack)
    meter.start()
    spawned = time.monotonic()
    rss: list[float] = []
    first: float | None = None
    left = n
    deadline = spawned + timeout_s
    while time.monotonic() < deadline:
        waiting, leased = await queue.pending()
        left = waiting + leased
        if left < n and first is None:
            first = time.monotonic()
        if first is not None and proc.alive():  # from its first release on (not while it starts)
            rss.append(rss_mb(proc.pid))
        if left == 0:
            break
        await asyncio.sleep(0.05)
    done = time.monotonic()
    released = n - left
    span = done - (first or spawned)
    print(
        f"  released {released}/{n} in {span:.1f}s from the first release = {released / span:.0f} items/s "
        f"(bar ≥ 20,000/s); {done - spawned:.1f}s including the process start"
    )
    print(
        f"  scheduler RSS: {rss[0] if rss else float('nan'):.0f} MB at its first release, "
        f"peak {max(rss, default=float('nan')):.0f} MB, {rss_mb(proc.pid):.0f} MB after"
    )
    print("    " + meter.report(max(1, released), "item"))
    stack.services.pop("scheduler-bench").stop()
    await redis.aclose()
