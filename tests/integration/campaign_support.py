"""A campaign stack: the email stack plus the scheduler and a campaigns replica, and helpers."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from herald_campaigns.main import serve as serve_campaigns
from herald_campaigns.settings import CampaignsSettings
from herald_common.settings import load
from herald_scheduler.main import serve as serve_scheduler
from tests.conftest import Infra
from tests.harness import eventually, running
from tests.integration.channel_support import scheduler_settings
from tests.integration.stack import Stack, email_stack

TEMPLATE = {
    "category": "marketing",
    "email": {
        "subject": "Hello {{ contact.first_name }}",
        "text": "Hi {{ contact.first_name }}, you have {{ contact.points }} points.",
    },
}


@contextlib.asynccontextmanager
async def campaign_stack(infra: Infra, tmp: Path) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp) as stack:
        settings = load(CampaignsSettings, **stack.env.settings(campaigns_poll_interval_s=0.1))
        async with running((serve_campaigns, settings), (serve_scheduler, scheduler_settings(stack.env))):
            yield stack


async def members(stack: Stack, n: int, prefix: str = "m", **attributes: Any) -> list[str]:
    """``n`` contacts with an email address, a first name and points; their ids."""
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    contacts = [
        {
            "id": cid,
            "email": f"{cid}@example.com",
            "attributes": {"first_name": f"N{cid}", "points": i * 10, **attributes},
        }
        for i, cid in enumerate(ids)
    ]
    for start in range(0, n, 1000):
        status, body = await stack.api.call(
            "POST", "/v1/contacts:batch", {"contacts": contacts[start : start + 1000]}
        )
        assert status == 200, body
    return ids


async def new_campaign(stack: Stack, **fields: Any) -> str:
    await stack.api.call("PUT", "/v1/templates/promo", TEMPLATE)
    status, body = await stack.api.call("POST", "/v1/campaigns", {"template_id": "promo", **fields})
    assert status == 201, body
    return str(body["id"])


async def upload(stack: Stack, campaign_id: str, ids: list[str]) -> dict[str, Any]:
    data = "".join(f'{{"contact_id": "{i}"}}\n' for i in ids).encode()
    status, body = await stack.api.call(
        "POST",
        f"/v1/campaigns/{campaign_id}/audience",
        data=data,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert status == 200, body
    return dict(body)


async def campaign(stack: Stack, campaign_id: str) -> dict[str, Any]:
    status, body = await stack.api.call("GET", f"/v1/campaigns/{campaign_id}")
    assert status == 200, body
    return dict(body)


def received(stack: Stack, prefix: str) -> Counter[str]:
    """Messages the SMTP peer took for the contacts whose ids start with ``prefix``, per contact id."""
    ids = (r.split("@")[0] for m in stack.smtp.snapshot() for r in m.rcpt_to)
    return Counter(i for i in ids if i.startswith(prefix))


async def wait_state(stack: Stack, campaign_id: str, state: str, timeout_s: float = 30) -> dict[str, Any]:
    doc: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal doc
        doc = await campaign(stack, campaign_id)
        counts = doc["counts"]
        return doc["state"] == state and not counts["queued"] and sum(counts.values()) == doc["audience"]

    try:
        await eventually(check, timeout_s=timeout_s, interval_s=0.1)
    except AssertionError:
        raise AssertionError(f"campaign never became {state} with every recipient recorded: {doc}") from None
    return doc
