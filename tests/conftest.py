"""Session fixtures: the real Kafka-protocol broker and Redis-protocol server, started once by the test
session on free loopback ports. Every test or module gets its own topic prefix and Redis key prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from herald_dev.infra import free_port, start_broker, start_valkey
from herald_dev.valkey_cluster import valkey_cluster


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    redis_url: str
    redis_port: int
    workdir: Path


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    work = tmp_path_factory.mktemp("infra")
    if os.environ.get("HERALD_TEST_KAFKA_BOOTSTRAP") and os.environ.get("HERALD_TEST_REDIS_URL"):
        yield Infra(os.environ["HERALD_TEST_KAFKA_BOOTSTRAP"], os.environ["HERALD_TEST_REDIS_URL"], 0, work)
        return
    kport = free_port()
    broker = start_broker(kport, log=work / "broker.log")
    try:
        if os.environ.get("HERALD_TEST_REDIS") == "cluster":  # make test-cluster: three masters
            with valkey_cluster(work / "cluster") as ports:
                yield Infra(f"127.0.0.1:{kport}", f"redis+cluster://127.0.0.1:{ports[0]}", ports[0], work)
            return
        rport = free_port()
        redis = start_valkey(rport, work / "valkey", appendonly=False, log=work / "valkey.log")
        try:
            yield Infra(f"127.0.0.1:{kport}", f"redis://127.0.0.1:{rport}/0", rport, work)
        finally:
            redis.stop()
    finally:
        broker.stop()


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
