"""The cluster tier really runs on Redis Cluster: the session's URL is a three-master cluster, the
client Herald builds from it is the cluster client, and a tenant's keys land on one slot while
different tenants spread over the masters."""

from __future__ import annotations

import os

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from herald_common.redisio import Keys, redis_from_url
from tests.conftest import Infra, unique

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture(autouse=True)
def _cluster_tier() -> None:
    if os.environ.get("HERALD_TEST_REDIS") != "cluster":
        pytest.skip("runs in make test-cluster (HERALD_TEST_REDIS=cluster)")


async def test_the_stack_runs_on_three_masters_and_tenants_spread_over_them(infra: Infra) -> None:
    redis = redis_from_url(infra.redis_url)
    try:
        assert isinstance(redis, RedisCluster)
        info = await redis.cluster_info()
        assert info["cluster_state"] == "ok" and int(info["cluster_size"]) == 3
        keys = Keys(unique("cl"))
        tenants = [unique("t") for _ in range(30)]
        for tenant in tenants:
            await redis.set(keys.notification(tenant, "n1"), b"1")
            await redis.hset(keys.ledger(tenant, "d1"), "state", "sent")
        nodes = {redis.get_node_from_key(keys.notification(t, "n1")).name for t in tenants}
        assert len(nodes) == 3  # 30 tenants over three masters
        for tenant in tenants:
            slots = {
                key_slot(k.encode()) for k in (keys.notification(tenant, "n1"), keys.ledger(tenant, "d1"))
            }
            assert len(slots) == 1
            assert await redis.get(keys.notification(tenant, "n1")) == b"1"
    finally:
        await redis.aclose()
