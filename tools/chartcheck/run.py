"""``make charts``: every check, over the chart's defaults and each ``ci/*-values.yaml`` scenario."""

from __future__ import annotations

from collections import Counter

import helm_python as helm

from chartcheck.compose import compose_errors, dockerfile_errors
from chartcheck.dashboard import dashboard_errors
from chartcheck.invariants import Manifests, container_errors, deployment_errors, wiring_errors
from chartcheck.paths import KUBE_VERSIONS, Doc
from chartcheck.render import (
    docs_errors,
    lint,
    render,
    scenarios,
    schema_closed_errors,
    schema_errors,
    values_table,
)
from chartcheck.schemas import manifest_errors
from chartcheck.wiring import settings_wiring_errors


def invariant_errors(docs: list[Doc]) -> list[str]:
    m = Manifests(docs)
    errors = [e for name, dep in m.deployments.items() for e in deployment_errors(m, name, dep)]
    for job in m.of("Job"):
        pod = job["spec"]["template"]["spec"]
        for c in pod["containers"]:
            errors += container_errors(f"Job/{job['metadata']['name']}/{c['name']}", pod, c, probes=False)
    return errors + list(wiring_errors(m)) + list(settings_wiring_errors(m))


def check_scenario(values: Doc) -> tuple[list[Doc], list[str]]:
    """Render one values set and run every check on it: (objects, errors)."""
    errors = schema_errors(values)
    try:
        docs = render(values)
    except helm.HelmError as e:
        return [], [*errors, f"render: {e}"]
    errors += lint(values) + manifest_errors(docs) + invariant_errors(docs)
    return docs, errors


def main(argv: list[str]) -> int:
    if "--values-table" in argv:
        print(values_table())
        return 0
    failed = 0

    def report(label: str, errors: list[str], detail: str = "") -> None:
        nonlocal failed
        failed += bool(errors)
        print(f"{'FAIL' if errors else 'ok  '} {label}{detail}")
        for error in errors:
            print(f"       {error}")

    report(
        "values.schema.json closed, values.yaml documented, README table",
        schema_closed_errors() + docs_errors(),
    )
    for name, values in scenarios().items():
        docs, errors = check_scenario(values)
        kinds = Counter(d["kind"] for d in docs)
        report(
            f"chart scenario {name}",
            errors,
            f": {len(docs)} objects ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})",
        )
    report("docker-compose.yml, Dockerfile", compose_errors() + dockerfile_errors())
    report("dashboards/herald.json", dashboard_errors())
    print(
        f"{failed} check(s) failed"
        if failed
        else f"all checks passed (Kubernetes {', '.join(KUBE_VERSIONS)})"
    )
    return 1 if failed else 0
