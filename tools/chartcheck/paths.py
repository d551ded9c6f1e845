"""Where the checked files are, and the Kubernetes versions the chart is validated against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "herald"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = CHART / "dashboards" / "herald.json"
RELEASE = NAMESPACE = "herald"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())

Doc = dict[str, Any]
