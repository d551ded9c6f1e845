"""``herald campaigns watch ID``: a live progress bar of one campaign, from ``GET /v1/campaigns/{id}``."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

FINAL = ("completed", "cancelled")
_SHOWN = ("sent", "delivered", "failed", "suppressed", "capped", "cancelled", "skipped")


def describe(doc: dict[str, Any]) -> str:
    counts = doc.get("counts", {})
    parts = [f"{name} {counts[name]:,}" for name in _SHOWN if counts.get(name)]
    eta = doc.get("eta_s")
    when = f" · ETA {eta:.0f}s" if isinstance(eta, int | float) else ""
    return f"[bold]{doc['state']}[/] · {' · '.join(parts) or 'nothing sent yet'}{when}"


async def watch(url: str, api_key: str, campaign_id: str, interval_s: float) -> int:
    console = Console()
    headers = {"Authorization": f"Bearer {api_key}"}
    columns = (
        TextColumn("{task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    async with aiohttp.ClientSession(headers=headers) as http:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("fan-out", total=None, name=campaign_id, detail="")
            while True:
                async with http.get(f"{url.rstrip('/')}/v1/campaigns/{campaign_id}") as resp:
                    doc = await resp.json(content_type=None)
                    if resp.status != 200:
                        console.print(f"[red]{resp.status}[/] {doc.get('detail', doc)}")
                        return 1
                counts = doc.get("counts", {})
                done = sum(v for k, v in counts.items() if k != "queued")
                progress.update(
                    task,
                    total=doc.get("audience") or None,
                    completed=done,
                    name=doc.get("name") or campaign_id,
                    detail=describe(doc),
                )
                if doc["state"] in FINAL and not counts.get("queued"):
                    return 0
                await asyncio.sleep(interval_s)
