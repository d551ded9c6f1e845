"""The tenant's view of a campaign: what ``GET /v1/campaigns/{id}`` answers and what its
``campaign.progress`` and ``campaign.finished`` webhooks carry."""

from __future__ import annotations

from typing import Any

from herald_common.campaigns.model import OUTCOMES
from herald_common.campaigns.records import Records
from herald_common.campaigns.store import Snapshot


async def describe(records: Records, snap: Snapshot) -> dict[str, Any]:
    """Configuration, state, progress counts (one read of the record's counters) and ETA."""
    c = snap.campaign
    counts, reasons = await records.counts(c.tenant_id, c.id)
    snapshotted = snap.fields.get("phase") in ("fanout", "done", "cancelling") or "recipients" in snap.fields
    audience = int(snap.number("recipients") if snapshotted else snap.number("audience"))
    fanned = int(snap.number("fanned"))
    eta = None
    if snap.state == "running" and snapshotted:
        eta = round(max(0, audience - fanned) / snap.rate, 1)
    body: dict[str, Any] = {
        **c.model_dump(mode="json", exclude_none=True, exclude={"tenant_id"}),
        "state": snap.state,
        "rate_per_s": snap.rate,
        "audience": audience,
        "fanned_out": fanned,
        "counts": {o: counts.get(o, 0) for o in OUTCOMES},
        "reasons": reasons,
        "eta_s": eta,
    }
    for name in ("started_at", "ended_at"):
        if snap.fields.get(name):
            body[name] = float(snap.fields[name])
    return body
