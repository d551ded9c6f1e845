"""A personalised campaign through the SendGrid-format peer: each member greeted by name with their own
points, in requests of up to 1,000 personalizations (per-recipient substitutions), not one per member.

The bulk sender starts once the router has routed every member (a backlog, as behind a rate limit), so
how many requests it takes depends on batching alone, not on how fast this shared machine fans out."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from herald_campaigns.main import serve as serve_campaigns
from herald_campaigns.settings import CampaignsSettings
from herald_common.metrics import REGISTRY
from herald_common.settings import load
from herald_dev.infra import free_port
from herald_gateway.main import serve as serve_gateway
from herald_gateway.settings import GatewaySettings
from herald_router.main import serve as serve_router
from herald_router.settings import RouterSettings
from herald_scheduler.main import serve as serve_scheduler
from herald_sender.main import serve as serve_sender
from herald_tracker.main import serve as serve_tracker
from herald_tracker.settings import TrackerSettings
from tests.conftest import Infra, unique
from tests.harness import ADMIN_TOKEN, Api, Env, eventually, running
from tests.integration.campaign_support import TEMPLATE
from tests.integration.channel_support import provider_peers, scheduler_settings, sender_settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.timeout(150),
]

N = 2500


def routed() -> float:
    return REGISTRY.get_sample_value("herald_routed_total", {"channel": "email", "outcome": "routed"}) or 0.0


async def test_personalised_campaign_reaches_sendgrid_in_requests_of_up_to_1000(
    infra: Infra, tmp_path: Path
) -> None:
    env = Env(infra.bootstrap, infra.redis_url, unique("cb"))
    await env.create_topics(partitions=4)
    port = free_port()
    async with provider_peers(tmp_path) as peers:
        bulk = {
            "sender_lane": "bulk",
            "email_providers": "sendgrid",
            "consumer_concurrency": 1000,
            "consumer_max_batch": 1000,
            "provider_timeout_s": 10.0,  # a request of 1,000 personalizations takes more than the 0.5 s
            "sendgrid_batch_linger_ms": 200,  # the bulk lane may wait for fuller requests
        }
        services = [
            (serve_gateway, load(GatewaySettings, **env.settings(http_port=port, admin_token=ADMIN_TOKEN))),
            (serve_router, load(RouterSettings, **env.settings(router_lane="bulk"))),
            (serve_tracker, load(TrackerSettings, **env.settings())),
            (serve_scheduler, scheduler_settings(env)),
            (serve_campaigns, load(CampaignsSettings, **env.settings(campaigns_poll_interval_s=0.1))),
        ]
        async with running(*services), aiohttp.ClientSession() as http:
            api = Api(http, f"http://127.0.0.1:{port}")
            api.token = await api.new_tenant()
            contacts = [
                {
                    "id": f"p{i:05d}",
                    "email": f"p{i:05d}@example.com",
                    "attributes": {"first_name": f"N{i}", "points": i},
                }
                for i in range(N)
            ]
            for start in range(0, N, 1000):
                status, body = await api.call(
                    "POST", "/v1/contacts:batch", {"contacts": contacts[start : start + 1000]}
                )
                assert status == 200, body
            assert (await api.call("PUT", "/v1/templates/promo", TEMPLATE))[0] == 200
            status, created = await api.call(
                "POST",
                "/v1/campaigns",
                {"template_id": "promo", "segment": "contact.has_email", "rate_per_s": 20_000},
            )
            assert status == 201, created
            before = routed()
            assert (await api.call("POST", f"/v1/campaigns/{created['id']}:start"))[0] == 202
            await eventually(lambda: routed() - before >= N, timeout_s=90, interval_s=0.1)
            assert not peers.sendgrid.requests

            def arrived() -> Counter[str]:
                return Counter(m["to"] for m in peers.sendgrid.messages if m["to"].startswith("p"))

            async with running((serve_sender, sender_settings(env, peers, "email", **bulk))):
                try:
                    await eventually(lambda: len(arrived()) >= N, timeout_s=60, interval_s=0.1)
                except AssertionError:
                    _, doc = await api.call("GET", f"/v1/campaigns/{created['id']}")
                    raise AssertionError(f"{len(arrived())} of {N} arrived: {doc}") from None
            got = arrived()
            assert sorted(got) == [c["email"] for c in contacts] and set(got.values()) == {1}
            for m in peers.sendgrid.messages:
                i = int(m["to"][1:6])
                assert m["subject"] == f"Hello N{i}" and m["text"] == f"Hi N{i}, you have {i} points.", m
            sizes = [len(r["personalizations"]) for r in peers.sendgrid.requests]
            ps = [p for r in peers.sendgrid.requests for p in r["personalizations"]]
            assert all(p["substitutions"] and p["subject"].startswith("Hello N") for p in ps)
            assert sum(sizes) == N and max(sizes) <= 1000
            # Batched, not one request per member: a few requests of hundreds (the consumer's fetches
            # may split a thousand in two or three), never anywhere near N.
            assert len(sizes) <= 4 * math.ceil(N / 1000), sizes
            assert max(sizes) >= 250, sizes
