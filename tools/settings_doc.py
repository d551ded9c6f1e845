"""Every HERALD_* setting, generated from the settings classes themselves, for the README.

python tools/settings_doc.py           print the table
python tools/settings_doc.py --write   rewrite the table between the README's markers
python tools/settings_doc.py --check   exit 1 if the README's table is out of date
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- settings:start -->", "<!-- settings:end -->"

# (module, class, who reads it) in the order the README lists them.
CLASSES = [
    ("herald_common.settings", "CommonSettings", "every service"),
    ("herald_common.settings", "ConsumerSettings", "router, sender, tracker, scheduler, webhooks"),
    ("herald_common.webhooks.targets", "TargetSettings", "gateway, webhooks"),
    ("herald_common.stats", "RecordSettings", "gateway, tracker"),
    ("herald_gateway.settings", "GatewaySettings", "gateway"),
    ("herald_providers.config", "ReceiptSettings", "gateway"),
    ("herald_router.settings", "RouterSettings", "router"),
    ("herald_sender.settings", "SenderSettings", "sender"),
    ("herald_providers.config", "ProviderSettings", "sender"),
    ("herald_tracker.settings", "TrackerSettings", "tracker"),
    ("herald_scheduler.settings", "SchedulerSettings", "scheduler"),
    ("herald_webhooks.settings", "WebhooksSettings", "webhooks"),
]


def _default(field: object) -> str:
    from pydantic.fields import FieldInfo
    from pydantic_core import PydanticUndefined

    assert isinstance(field, FieldInfo)
    if field.is_required():
        return "(required)"
    value = field.default
    if value is PydanticUndefined or value is None:
        return ""
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    return f"`{value}`"


def rows() -> list[tuple[str, str, str, str]]:
    seen: set[str] = set()
    out = []
    for module, name, users in CLASSES:
        try:
            cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        for field_name, field in cls.model_fields.items():
            var = "HERALD_" + field_name.upper()
            if var in seen:
                continue
            seen.add(var)
            out.append((var, _default(field), users, (field.description or "").replace("|", "\\|")))
    return out


def table() -> str:
    lines = ["| Variable | Default | Read by | Meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{var}` | {default} | {users} | {desc} |" for var, default, users, desc in rows()]
    return "\n".join(lines)


def replace(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> int:
    sys.path[:0] = [str(ROOT / "libs"), str(ROOT / "services")]
    path = ROOT / "README.md"
    if "--write" in sys.argv:
        path.write_text(replace(path.read_text()))
        return 0
    if "--check" in sys.argv:
        current = path.read_text()
        if replace(current) != current:
            print("README.md settings table is out of date: run python tools/settings_doc.py --write")
            return 1
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
