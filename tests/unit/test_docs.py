"""The README stays true: its settings table is generated from the settings classes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting_as_the_code_defines_it() -> None:
    spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "tools" / "settings_doc.py")
    assert spec and spec.loader
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    readme = (ROOT / "README.md").read_text()
    assert doc.replace(readme) == readme, "run: python tools/settings_doc.py --write"
    assert len(doc.rows()) > 40


def test_readme_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _readme_rows() -> dict[str, tuple[str, str, str]]:
    readme = (ROOT / "README.md").read_text()
    table = readme.partition("<!-- settings:start -->")[2].partition("<!-- settings:end -->")[0]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0].strip("`")] = (cells[1], cells[2], cells[3])
    return rows


def test_readme_names_every_reader_of_every_setting() -> None:
    """Each service's settings class is the truth: every field it parses is a variable that service reads."""
    from herald_cli.main import SERVICE_SETTINGS, settings_class

    rows = _readme_rows()
    for service in SERVICE_SETTINGS:
        for field in settings_class(service).model_fields:
            var = "HERALD_" + field.upper()
            assert var in rows, f"{var} (read by {service}) is missing from the README"
            readers = rows[var][1]
            assert readers == "every service" or service in readers.split(", "), (
                f"{var} is read by {service}, the README says: {readers}"
            )
    assert "HERALD_CAMPAIGNS_LEASE_S" in rows
    assert "campaigns" in rows["HERALD_ID_SECRET"][1] and "router" in rows["HERALD_ID_SECRET"][1]


def test_readme_names_no_reader_that_does_not_read_the_setting() -> None:
    from herald_cli.main import SERVICE_SETTINGS, settings_class

    fields = {service: set(settings_class(service).model_fields) for service in SERVICE_SETTINGS}
    for var, (_, readers, _) in _readme_rows().items():
        field = var.removeprefix("HERALD_").lower()
        named = list(SERVICE_SETTINGS) if readers == "every service" else readers.split(", ")
        for service in named:
            assert field in fields[service], f"README says {service} reads {var}; its settings do not"


def test_readme_final_states_are_the_code_s() -> None:
    """The webhooks section lists exactly the statuses that fire ``notification.final``."""
    import re

    from herald_common.status import TERMINAL
    from herald_common.webhooks.model import event_types_for

    readme = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"`notification\.final` only final states \(([^)]*)\)", readme)
    assert found, "the webhooks section no longer lists the final states"
    listed = {s.strip().strip("`") for s in re.split(r",|\band\b", found.group(1)) if s.strip()}
    assert listed == set(TERMINAL)
    assert all("notification.final" in event_types_for(s) for s in listed)


def test_readme_layout_names_every_service_and_package() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    layout = readme.partition("### Layout")[2].partition("```")[2].partition("```")[0]
    services_entry = layout.partition("services/herald_*")[2].partition("\ntests/")[0]
    named = set(re.findall(r"[a-z]+", services_entry))
    for path in sorted((ROOT / "services").glob("herald_*/")):
        assert path.name.removeprefix("herald_") in named, f"the layout omits services/{path.name}"
    for path in sorted((ROOT / "libs" / "herald_common").glob("*/__init__.py")):
        assert f"{path.parent.name}/" in layout, f"the layout omits libs/herald_common/{path.parent.name}/"
