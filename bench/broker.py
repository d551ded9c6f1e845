"""Every bench scenario starts from a broker in the same state.

The embedded broker (Tansu, memory storage engine) keeps every record it was given: it does not apply
``retention.ms``/``segment.ms`` (a topic's beginning offset stays 0), refuses DeleteRecords, and gets
slower as it fills. Between scenarios the bench stops the services, restarts the broker on the same
port (an empty broker: no records, no consumer groups, no committed offsets), creates Herald's topics
again and starts the same service processes again. Valkey is kept: each scenario makes its own tenant.
"""

from __future__ import annotations

import asyncio
import time

from bench.stack import BenchStack, rss_mb
from herald_common.kafka import create_topics
from herald_common.topics import Topics
from herald_dev.infra import Managed, start_broker

PREFIXES = ("herald", "intake")


def broker(stack: BenchStack) -> Managed:
    return next(p for p in stack.infra if p.name == "kafka")


def broker_rss_mb(stack: BenchStack) -> float:
    return rss_mb(broker(stack).pid)


async def stop_services(stack: BenchStack) -> None:
    procs = [p for p in stack.services.values() if p.alive()]
    for proc in procs:
        proc.signal(15)
    await asyncio.gather(*(asyncio.to_thread(proc.stop, 20) for proc in procs))


async def fresh_broker(stack: BenchStack, label: str) -> None:
    """Stop the services, replace the broker with an empty one on the same port, recreate the topics
    and start the same services again (same ports and environment). Prints what the broker held."""
    started = time.monotonic()
    old = broker(stack)
    before = rss_mb(old.pid)
    await stop_services(stack)
    port = int(stack.env["HERALD_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    await asyncio.to_thread(old.stop, 10)
    new = await asyncio.to_thread(start_broker, port, old.log)
    stack.infra[stack.infra.index(old)] = new
    for prefix in PREFIXES:
        await create_topics(stack.env["HERALD_KAFKA_BOOTSTRAP"], Topics(prefix).all(), 12)
    for name, proc in list(stack.services.items()):
        stack.services[name] = Managed(proc.name, proc.argv, env=proc.env, log=proc.log).start()
    for proc in stack.services.values():
        await stack.ready(proc)
    print(
        f"\n[fresh broker before {label}: it held {before:.0f} MB RSS, the new one {rss_mb(new.pid):.0f} MB; "
        f"services restarted in {time.monotonic() - started:.1f}s]"
    )


class Scenarios:
    """Called before each scenario: the first runs on the broker the stack started with, every later one
    on a fresh broker (unless turned off with ``--no-reset``, to see what a used broker costs)."""

    def __init__(self) -> None:
        self.reset = True
        self.started = 0

    async def before(self, stack: BenchStack, label: str) -> None:
        if self.reset and self.started:
            await fresh_broker(stack, label)
        self.started += 1


SCENARIOS = Scenarios()
