"""Rendering the chart offline (helm-python-sdk), and the values file's schema and documentation."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import jsonschema
import yaml

from chartcheck.paths import CHART, KUBE_VERSIONS, NAMESPACE, RELEASE, Doc


def scenarios() -> dict[str, Doc]:
    """The chart defaults plus every ci/<name>-values.yaml, keyed by <name>."""
    found: dict[str, Doc] = {"defaults": {}}
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        found[path.name.removesuffix("-values.yaml")] = yaml.safe_load(path.read_text()) or {}
    return found


def render(values: Doc) -> list[Doc]:
    """Every object the chart renders for these values (hooks included, NOTES.txt excluded).

    Raises helm.HelmError when the values break the schema or a template calls ``fail``.
    """
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[Doc] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def lint(values: Doc) -> list[str]:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[-1]}")
    findings = [f"lint {m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2]
    return findings or [f"lint: {e.strip()}" for e in report["errors"]]


# ------------------------------------------------------------------------------------------ values


def schema_errors(values: Doc) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"values {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(values)
    ]


def schema_closed_errors(node: Any = None, where: str = "#") -> list[str]:
    """Every object in values.schema.json is closed: additionalProperties false, or a schema for maps."""
    if node is None:
        node = json.loads((CHART / "values.schema.json").read_text())
    errors = []
    if isinstance(node, dict):
        if node.get("type") == "object" and node.get("additionalProperties", True) is True:
            errors.append(f"schema {where}: object open to unknown keys (set additionalProperties)")
        for key, child in node.items():
            errors += schema_closed_errors(child, f"{where}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            errors += schema_closed_errors(child, f"{where}/{i}")
    return errors


_KEY = re.compile(r"^(\s*)([A-Za-z][\w-]*):")


def documented_values() -> tuple[list[tuple[str, Any, str]], list[str]]:
    """(path, default, description) of every leaf in values.yaml, and the keys lacking a comment.

    A key is documented when the comment line right above it reads ``# <key> -- <description>``.
    """
    lines = (CHART / "values.yaml").read_text().splitlines()
    defaults = yaml.safe_load("\n".join(lines))
    rows: list[tuple[str, Any, str]] = []
    errors: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing the current line
    for i, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        path = ".".join(k for _, k in stack)
        above = lines[i - 1].strip() if i else ""
        if not above.startswith(f"# {key} -- "):
            errors.append(f"values.yaml:{i + 1}: {path} lacks a '# {key} -- ...' comment")
            continue
        value: Any = defaults
        for _, k in stack:
            value = value[k]
        if not (isinstance(value, dict) and value):
            rows.append((path, value, above.split(" -- ", 1)[1]))
    return rows, errors


def values_table() -> str:
    rows, _ = documented_values()
    out = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for path, value, desc in rows:
        out.append(f"| `{path}` | `{json.dumps(value)}` | {desc.replace('|', '/').replace('<', '&lt;')} |")
    return "\n".join(out)


def docs_errors() -> list[str]:
    _, errors = documented_values()
    if values_table() not in (CHART / "README.md").read_text():
        errors.append("charts/herald/README.md: values table is stale; regenerate it with --values-table")
    return errors
