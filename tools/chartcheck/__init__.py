"""Checks of the Helm chart, docker-compose.yml, the Dockerfile and the Grafana dashboard (`make charts`).

Works offline, with no helm binary and no cluster:

- :mod:`.render`: helm-python-sdk (Helm's Go SDK bundled in its wheel) renders the chart with the
  defaults and every ``charts/herald/ci/*-values.yaml`` scenario and lints it; jsonschema checks each
  values file against values.schema.json, which must be closed, and values.yaml must be documented;
- :mod:`.schemas`: kubernetes-validate checks every rendered object against the Kubernetes OpenAPI
  schemas (oldest supported and newest shipped version), and the KEDA ScaledObject and ServiceMonitor
  against small structural schemas;
- :mod:`.invariants`: grace period > drain timeout + preStop sleep, no ``replicas`` where an autoscaler
  owns them, PDBs only above one replica, probes/resources/restricted securityContext everywhere;
- :mod:`.wiring`: each workload's ``HERALD_*`` variables, scoped by least privilege — derived from the
  services' settings classes, the channel specs and the provider registry, not from a hand-kept list;
- :mod:`.compose`: docker-compose.yml runs every service command the ``herald`` CLI defines, and the
  Dockerfile's promises; :mod:`.dashboard`: the dashboard shows every declared metric.
"""

from chartcheck.compose import compose_errors, dockerfile_errors
from chartcheck.dashboard import dashboard_errors, declared_metrics
from chartcheck.paths import COMPOSE, DASHBOARD, ROOT
from chartcheck.render import docs_errors, render, scenarios, schema_closed_errors, schema_errors
from chartcheck.run import check_scenario, invariant_errors, main
from chartcheck.schemas import manifest_errors
from chartcheck.wiring import SCOPED_ENV, herald_commands

__all__ = [
    "COMPOSE",
    "DASHBOARD",
    "ROOT",
    "SCOPED_ENV",
    "check_scenario",
    "compose_errors",
    "dashboard_errors",
    "declared_metrics",
    "dockerfile_errors",
    "docs_errors",
    "herald_commands",
    "invariant_errors",
    "main",
    "manifest_errors",
    "render",
    "scenarios",
    "schema_closed_errors",
    "schema_errors",
]
