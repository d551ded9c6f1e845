"""The campaign scenario of `make bench`: a personalised campaign from a segment, fanned out by the
campaigns service to the SendGrid-format peer, while transactional SMS keep flowing.

Contacts are written straight into Valkey (pipelined, through ``Store.put_contacts``, which keeps the
per-tenant contact index the segment is evaluated over): the scenario measures the campaign, not the
contacts API. Every ``1/MISS``-th contact is outside the segment. The duration runs from ``:start`` to
the last recipient accepted by the peer; the transactional SMS line is the accept→peer latency of one
SMS every 20 ms meanwhile. Also printed: Valkey's ``used_memory`` taken by the campaign (its snapshot
and the record per recipient).

    python -m bench.e2e --only campaign --campaign 1000000
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import redis.asyncio as aioredis

from bench.report import REPORT
from bench.stack import ADMIN, Arrivals, BenchStack, CpuMeter, pct, send_all
from herald_common.redisio import Keys
from herald_common.schemas import Contact
from herald_common.store import Store

MISS = 20  # one contact in MISS is not in the segment
LOAD_CHUNK = 5000
TEMPLATE = {
    "category": "marketing",
    "email": {
        "subject": "{{ contact.first_name }}, this weekend: 2 for 1",
        "text": "Hi {{ contact.first_name }}, you have {{ contact.points }} points. Bring a friend.",
        "html": "<p>Hi {{ contact.first_name }}, you have <b>{{ contact.points }}</b> points.</p>",
    },
}
SEGMENT = 'contact.attributes.tier in ["gold", "platinum"] && contact.attributes.home_cinema == "Embassy"'


async def _tenant(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with http.post(f"{base}/admin/v1/tenants", json={"name": "Campaign"}, headers=admin) as resp:
        tenant = await resp.json()
    async with http.post(f"{base}/admin/v1/tenants/{tenant['id']}/api-keys", headers=admin) as resp:
        return str(tenant["id"]), str((await resp.json())["api_key"])


async def load_contacts(redis: aioredis.Redis, tenant_id: str, n: int) -> int:
    """``n`` members in the segment (and one in ``MISS`` more outside it); how many were written."""
    store = Store(redis, Keys())
    total = n + n // (MISS - 1)
    for start in range(0, total, LOAD_CHUNK):
        contacts = [
            Contact.model_validate_json(
                orjson.dumps(
                    {
                        "id": f"m{i:08d}",
                        "email": f"m{i:08d}@example.com",
                        "attributes": {
                            "first_name": f"N{i}",
                            "points": i % 5000,
                            "tier": "silver" if i % MISS == MISS - 1 else ("gold", "platinum")[i % 2],
                            "home_cinema": "Embassy",
                        },
                    }
                )
            )
            for i in range(start, min(total, start + LOAD_CHUNK))
        ]
        await store.put_contacts(tenant_id, contacts)
    return total


async def _call(http: aiohttp.ClientSession, method: str, url: str, key: str, body: object = None) -> dict:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
        doc: dict = await resp.json()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {url}: {resp.status} {doc}")
        return doc


async def campaign(
    stack: BenchStack, http: aiohttp.ClientSession, base: str, n: int, timeout_s: float
) -> None:
    tenant_id, key = await _tenant(http, base)
    redis = aioredis.Redis.from_url(stack.env["HERALD_REDIS_URL"])
    try:
        loaded_at = time.monotonic()
        total = await load_contacts(redis, tenant_id, n)
        print(f"\ncampaign: {total} contacts written to Valkey in {time.monotonic() - loaded_at:.1f}s")
        await _call(http, "PUT", f"{base}/v1/templates/promo", key, TEMPLATE)
        created = await _call(
            http,
            "POST",
            f"{base}/v1/campaigns",
            key,
            {"template_id": "promo", "segment": SEGMENT, "rate_per_s": 100_000},
        )
        url = f"{base}/v1/campaigns/{created['id']}"
        used_before = int((await redis.info("memory"))["used_memory"])
        sms = Arrivals(lambda i: [m["text"] for m in stack.twilio.messages[i:]])
        sms.reset()
        start_count = stack.sendgrid.recipients_accepted
        accepted_tx: dict[int, float] = {}
        meter = CpuMeter(stack)
        meter.start()
        if REPORT.profiler:
            pids = {name: p.pid for name, p in stack.services.items() if p.alive()}
            REPORT.profiler.start("campaign", pids)
        started = time.monotonic()
        await _call(http, "POST", url + ":start", key)

        def done() -> int:
            return stack.sendgrid.recipients_accepted - start_count

        async def transactional() -> None:  # one SMS every 20 ms while the campaign runs
            i = 100_000
            while done() < n and time.monotonic() - started < timeout_s:
                body = [
                    {
                        "to": {"phone": f"+4479112{i % 100000:05d}"},
                        "content": {"sms": {"text": "code n={{ data.n }}"}},
                        "data": {"n": i},
                    }
                ]
                accepted_tx[i] = (await send_all(http, base, key, body))[0]
                i += 1
                sms.poll()
                await asyncio.sleep(0.02)

        tx = asyncio.create_task(transactional())
        fanned_at = None
        while done() < n and time.monotonic() - started < timeout_s:
            await asyncio.sleep(0.05)
            if fanned_at is None and int(time.monotonic() * 20) % 20 == 0:
                doc = await _call(http, "GET", url, key)
                if doc["fanned_out"] >= n:
                    fanned_at = time.monotonic()
        elapsed = time.monotonic() - started
        if REPORT.profiler:
            REPORT.profiles["campaign"] = REPORT.profiler.stop(meter.used(max(1, done())))
        await tx
        await sms.wait(len(accepted_tx), 10)
        doc = await _call(http, "GET", url, key)
        used_after = int((await redis.info("memory"))["used_memory"])
    finally:
        await redis.aclose()
    lat = [(sms.seen[i] - accepted_tx[i]) * 1000 for i in sms.seen if i in accepted_tx]
    fanned = f"{fanned_at - started:.1f}s" if fanned_at is not None else "not finished"
    print(
        f"  personalised campaign from a segment, campaigns service → SendGrid peer: {done()}/{n} "
        f"recipients in {elapsed:.1f}s = {done() / elapsed:.0f}/s (fanned out in {fanned}; "
        f"bar for 1,000,000: ≤ 300 s)"
    )
    print(f"  campaign state {doc['state']}, audience {doc['audience']}, counts {doc['counts']}")
    grew = used_after - used_before
    print(
        f"  Valkey used_memory for the campaign (snapshot + record per recipient): "
        f"{grew / 1e6:.0f} MB ({grew / max(1, n):.0f} B/recipient)"
    )
    print("    " + meter.report(max(1, done()), "recipient"))
    print(
        f"  transactional SMS during the campaign: {len(lat)} sent, accept→peer ms p50 {pct(lat, 50):.0f} "
        f"p99 {pct(lat, 99):.0f}  (bar p99 ≤ 500)"
    )
    if "campaign" in REPORT.profiles:
        print("  profile of the campaign (py-spy; share of samples, CPU ms per recipient)")
        print("\n".join(p.text() for p in REPORT.profiles["campaign"]))
