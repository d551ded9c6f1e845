"""The dependency locks cover pyproject.toml: every dependency is pinned, inside its range, with hashes.
A dependency added to pyproject.toml without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    found = {canonicalize_name(m[1]): m[2] for line in text.splitlines() if (m := PIN.match(line))}
    return found


def requirements(extras: list[str]) -> list[Requirement]:
    specs = list(PROJECT["dependencies"])
    for extra in extras:
        specs += PROJECT["optional-dependencies"][extra]
    return [r for r in map(Requirement, specs) if canonicalize_name(r.name) != PROJECT["name"]]


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", []), ("requirements-dev.lock", ["dev", "test"])]
)
def test_every_dependency_is_locked_inside_its_range(lock: str, extras: list[str]) -> None:
    locked = pins(lock)
    for req in requirements(extras):
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in {lock}: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {req.name}=={locked[name]}, outside {req.specifier}: run `make lock`"
        )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_pin_carries_hashes(lock: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
    for block in blocks:
        if PIN.match(block):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_image_lock_agrees_with_the_dev_lock() -> None:
    dev = pins("requirements-dev.lock")
    for name, version in pins("requirements.lock").items():
        assert dev.get(name) == version, f"{name}: {version} in requirements.lock, {dev.get(name)} in dev"
