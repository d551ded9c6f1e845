"""Every HERALD_* setting, generated from the settings classes themselves, for the README.

python tools/settings_doc.py           print the table
python tools/settings_doc.py --write   rewrite the table between the README's markers
python tools/settings_doc.py --check   exit 1 if the README's table is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- settings:start -->", "<!-- settings:end -->"

EVERY = "every service"


def services() -> dict[str, type[BaseSettings]]:
    """Each long-running service and the settings class it builds (the CLI's one list of services)."""
    from herald_cli.main import SERVICE_SETTINGS, settings_class

    return {service: settings_class(service) for service in SERVICE_SETTINGS}


def _home_order(classes: list[type[BaseSettings]]) -> list[type[BaseSettings]]:
    """Settings classes from the most shared to the most specific: the order the table lists them."""
    order: list[type[BaseSettings]] = []
    for cls in classes:
        for base in reversed(cls.__mro__):
            if isinstance(base, type) and issubclass(base, BaseSettings) and base is not BaseSettings:
                if base not in order:
                    order.append(base)
    shared = [c for c in order if c not in classes]
    by_users = {c: sum(issubclass(s, c) for s in classes) for c in shared}
    return sorted(shared, key=lambda c: -by_users[c]) + [c for c in order if c in classes]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value = field.default
    if value is PydanticUndefined or value is None:
        return ""
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    return f"`{value}`"


def _readers(names: list[str], everyone: list[str]) -> str:
    return EVERY if names == everyone else ", ".join(names)


def _per_reader(values: dict[str, str], everyone: list[str]) -> str:
    """One value when every reader agrees, else each value with the readers it holds for."""
    distinct = list(dict.fromkeys(values.values()))
    if len(distinct) == 1:
        return distinct[0]
    return "; ".join(
        f"{_readers([s for s, v in values.items() if v == value], everyone)}: {value or 'unset'}"
        for value in distinct
    )


def rows() -> list[tuple[str, str, str, str]]:
    """One row per variable, naming every service whose settings parse it."""
    classes = services()
    everyone = list(classes)
    fields: dict[str, dict[str, FieldInfo]] = {}  # field name -> {service: its field}
    for home in _home_order(list(classes.values())):
        for name in home.__annotations__:
            if name in home.model_fields:
                fields.setdefault(name, {})
    for service, cls in classes.items():
        for name, field in cls.model_fields.items():
            fields.setdefault(name, {})[service] = field
    out = []
    for name, by_service in fields.items():
        readers = [s for s in everyone if s in by_service]
        defaults = {s: _default(by_service[s]) for s in readers}
        meanings = {s: (by_service[s].description or "").replace("|", "\\|") for s in readers}
        out.append(
            (
                "HERALD_" + name.upper(),
                _per_reader(defaults, everyone),
                _readers(readers, everyone),
                _per_reader(meanings, everyone),
            )
        )
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
