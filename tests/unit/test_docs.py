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
