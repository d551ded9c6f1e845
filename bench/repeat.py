"""The repeatability check: the same SMS scenario N times in a row on one stack. Without a reset between
runs it shows what the embedded broker's growth costs (the issue's bar: the fifth 20,000-SMS run within
10 % of the first); with ``--repeat-reset`` each run starts from an empty broker (bench/broker.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.broker import broker_rss_mb, fresh_broker
from bench.report import REPORT, Repeat, services_ms
from bench.stack import Arrivals, BenchStack, tenant_key

Through = Callable[..., Awaitable[dict[int, float]]]


def sms_items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "to": {"phone": f"+4479111{i % 100000:05d}"},
            "content": {"sms": {"text": "{{ contact.first_name }}, your booking code is n={{ data.n }}"}},
            "data": {"n": i},
        }
        for i in range(n)
    ]


async def repeat_sms(
    stack: BenchStack,
    http: aiohttp.ClientSession,
    base: str,
    through: Through,
    *,
    n: int,
    times: int,
    timeout_s: float,
    reset_each: bool,
) -> list[Repeat]:
    mode = "fresh broker before each run" if reset_each else "same broker, no reset between runs"
    print(f"\nrepeatability: {times} runs of {n:,} SMS, {mode}")
    key = await tenant_key(http, base)
    sms = Arrivals(lambda i: [m["text"] for m in stack.twilio.messages[i:]])
    items = sms_items(n)
    runs: list[Repeat] = []
    for run in range(1, times + 1):
        if reset_each and run > 1:
            await fresh_broker(stack, f"SMS run {run}")
            key = await tenant_key(http, base)
        stack.twilio.messages.clear()  # the peer's capture lists would otherwise grow by n per run
        stack.twilio.requests.clear()
        await through(stack, http, base, key, sms, items, timeout_s, label=f"sms run {run}")
        scenario = REPORT.scenarios[-1]
        scenario.broker_mb = broker_rss_mb(stack)
        runs.append(Repeat(run, scenario.rate, scenario.cpu, scenario.broker_mb))
        print(
            f"  run {run}: {len(sms.seen)}/{n} delivered, {scenario.rate:7.0f} msg/s, Herald services "
            f"{services_ms(scenario.cpu):.2f} CPU ms/SMS, broker {scenario.cpu.get('kafka', 0):.2f} "
            f"ms/SMS and {scenario.broker_mb:.0f} MB RSS"
        )
    if runs and runs[0].rate:
        ratio = runs[-1].rate / runs[0].rate
        verdict = "met" if ratio >= 0.9 else "not met"
        print(f"  last/first rate {ratio:.2f}  (bar ≥ 0.90: {verdict})")
    REPORT.repeats["fresh broker before each run" if reset_each else "no reset"] = runs
    return runs
