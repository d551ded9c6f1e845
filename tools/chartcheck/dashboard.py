"""The Grafana dashboard shows every metric Herald declares, and nothing it does not declare."""

from __future__ import annotations

import json
import re
from collections import Counter

from chartcheck.paths import DASHBOARD, Doc


def declared_metrics() -> set[str]:
    """Every metric family registered in Herald's one metrics registry (herald_common.metrics)."""
    from herald_common.metrics import REGISTRY

    return {f.name + ("_total" if f.type == "counter" else "") for f in REGISTRY.collect()}


def dashboard_errors(dash: Doc | None = None) -> list[str]:
    if dash is None:
        dash = json.loads(DASHBOARD.read_text())
    declared = declared_metrics()
    errors: list[str] = []
    used: set[str] = set()
    panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
    ids = Counter(p.get("id") for p in dash.get("panels", []))
    errors += [f"dashboard: panel id {i} is used {n} times" for i, n in ids.items() if n > 1]
    for panel in panels:
        if not panel.get("targets"):
            errors.append(f"dashboard panel {panel.get('title')!r}: has no query")
        for target in panel.get("targets", []):
            for metric in re.findall(r"\bherald_\w+", target.get("expr", "")):
                metric = re.sub(r"_(bucket|sum|count)$", "", metric)
                used.add(metric)
                if metric not in declared:
                    errors.append(f"dashboard panel {panel.get('title')!r}: unknown metric {metric}")
    errors += [f"dashboard: no panel shows {m}" for m in sorted(declared - used)]
    return errors
