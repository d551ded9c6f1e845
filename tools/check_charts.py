"""Check the Helm chart, docker-compose.yml and the Grafana dashboard: what `make charts` runs.

Works offline, with no helm binary and no cluster:

- helm-python-sdk (Helm's Go SDK in a shared library bundled in its wheel) renders the chart with the
  defaults and every ``charts/herald/ci/*-values.yaml`` scenario, then lints it;
- jsonschema checks each values file against values.schema.json, and the schema itself is checked to
  be closed (``additionalProperties`` decided at every object level);
- kubernetes-validate checks every rendered object against the Kubernetes OpenAPI schemas (strict,
  oldest supported and newest shipped version); the KEDA ScaledObject and the ServiceMonitor, whose
  schemas it does not ship, are checked against the small structural schemas below;
- Herald's invariants: grace period > drain timeout + preStop sleep, no ``replicas`` where an
  autoscaler owns them, PDBs only above one replica, probes/resources/restricted securityContext on
  every container, selectors that select something;
- the settings wiring: every ``HERALD_*`` variable a workload gets of its own is one its service's
  settings class reads, the rendered environment builds that class without an error, and
  provider-, receipt- and credential-scoped variables reach only the workloads in ``SCOPED_ENV``;
- docker-compose.yml's structure (with the same ``SCOPED_ENV`` least privilege), the Dockerfile's
  promises (no Docker engine here to build it) and the dashboard's metric names against
  libs/herald_common/metrics.py.

Usage: ``python tools/check_charts.py`` (exit status 1 on any failure), or ``--values-table`` to
print the chart README's values table from values.yaml.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "herald"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = CHART / "dashboards" / "herald.json"
RELEASE = NAMESPACE = "herald"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())

Doc = dict[str, Any]

# --------------------------------------------------------------------------------------- rendering


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


# -------------------------------------------------------------------------------- manifest schemas

_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": _STRMAP,
        "annotations": _STRMAP,
    },
}
_DURATION = {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"}


def _crd(api_version: str, kind: str, spec: Doc) -> Doc:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
    }


# Structural schemas for the two CRDs kubernetes-validate does not ship (fields Herald uses + siblings).
CRD_SCHEMAS: dict[tuple[str, str], Doc] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _crd(
        "keda.sh/v1alpha1",
        "ScaledObject",
        {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {k: {"type": "string"} for k in ("name", "kind", "apiVersion")},
                },
                **{
                    k: {"type": "integer", "minimum": 0}
                    for k in ("pollingInterval", "cooldownPeriod", "idleReplicaCount", "minReplicaCount")
                },
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STRMAP,  # KEDA wants every trigger metadata value as a string
                            "authenticationRef": {"type": "object"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        },
                    },
                },
            },
        },
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _STRMAP, "matchExpressions": {"type": "array"}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    ),
}


def _name(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def manifest_errors(docs: list[Doc]) -> list[str]:
    errors = []
    for doc in docs:
        crd = CRD_SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
        if crd is not None:
            errors += [
                f"{_name(doc)}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in jsonschema.Draft7Validator(crd).iter_errors(doc)
            ]
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{_name(doc)} (k8s {version}): {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{_name(doc)}: {e.message}")
    return errors


# ------------------------------------------------------------------------------------- invariants

SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
PROBES = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _env(container: Doc, configmaps: dict[str, Doc], name: str) -> str | None:
    for item in container.get("env", []):
        if item["name"] == name and "value" in item:
            return str(item["value"])
    for source in container.get("envFrom", []):
        data = configmaps.get(source.get("configMapRef", {}).get("name", ""), {})
        if name in data:
            return str(data[name])
    return None


def _prestop_sleep(container: Doc) -> int:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return int(command[1]) if len(command) == 2 and command[0] == "sleep" else 0


def _container_errors(where: str, pod: Doc, container: Doc, *, probes: bool) -> Iterator[str]:
    res = container.get("resources", {})
    if not {"cpu", "memory"} <= res.get("requests", {}).keys() or "memory" not in res.get("limits", {}):
        yield f"{where}: needs requests.cpu, requests.memory and limits.memory"
    psc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        yield f"{where}: runAsNonRoot is not set"
    if sc.get("runAsUser", psc.get("runAsUser")) in (None, 0):
        yield f"{where}: runs as root"
    if sc.get("allowPrivilegeEscalation") is not False:
        yield f"{where}: allowPrivilegeEscalation must be false"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield f"{where}: readOnlyRootFilesystem must be true"
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        yield f"{where}: capabilities must drop ALL"
    if sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
        yield f"{where}: seccompProfile must be RuntimeDefault"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
        yield f"{where}: /tmp must be an emptyDir (the root filesystem is read-only)"
    if probes:
        ports = {p.get("name") for p in container.get("ports", [])} | {
            p["containerPort"] for p in container.get("ports", [])
        }
        for probe, path in PROBES.items():
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ports:
                yield f"{where}: {probe} must GET {path} on a declared container port"


class Manifests:
    """Rendered objects indexed the way the invariants need them."""

    def __init__(self, docs: list[Doc]) -> None:
        self.kinds: dict[str, list[Doc]] = {}
        for doc in docs:
            self.kinds.setdefault(doc["kind"], []).append(doc)
        self.configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in self.of("ConfigMap")}
        self.deployments = {d["metadata"]["name"]: d for d in self.of("Deployment")}
        self.hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in self.of("HorizontalPodAutoscaler")}
        self.scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in self.of("ScaledObject")}

    def of(self, kind: str) -> list[Doc]:
        return self.kinds.get(kind, [])

    def min_replicas(self, deployment: str) -> int:
        if deployment in self.hpas:
            return int(self.hpas[deployment]["spec"].get("minReplicas", 1))
        if deployment in self.scaled:
            return int(self.scaled[deployment]["spec"].get("minReplicaCount", 0))
        return int(self.deployments[deployment]["spec"].get("replicas", 1))

    def pods_selected(self, selector: dict[str, str]) -> dict[str, Doc]:
        return {
            name: d["spec"]["template"]
            for name, d in self.deployments.items()
            if _selects(selector, d["spec"]["template"]["metadata"].get("labels", {}))
        }


def _deployment_errors(m: Manifests, name: str, dep: Doc) -> Iterator[str]:
    spec, pod, where = dep["spec"], dep["spec"]["template"]["spec"], f"Deployment/{name}"
    if name in m.hpas and name in m.scaled:
        yield f"{where}: targeted by both an HPA and a KEDA ScaledObject"
    if (name in m.hpas or name in m.scaled) and "replicas" in spec:
        yield f"{where}: sets replicas although an autoscaler owns them"
    selector = spec["selector"].get("matchLabels", {})
    if not {"app.kubernetes.io/name", "app.kubernetes.io/instance"} <= selector.keys() <= SELECTOR_KEYS:
        yield f"{where}: selector must be name + instance (+ component), got {sorted(selector)}"
    if not _selects(selector, spec["template"]["metadata"].get("labels", {})):
        yield f"{where}: selector does not match its pod template"
    grace = pod.get("terminationGracePeriodSeconds")
    for c in pod["containers"]:
        yield from _container_errors(f"{where}/{c['name']}", pod, c, probes=True)
        drain, sleep = _env(c, m.configmaps, "HERALD_DRAIN_TIMEOUT_S"), _prestop_sleep(c)
        if drain is None:
            yield f"{where}/{c['name']}: HERALD_DRAIN_TIMEOUT_S is not set"
        elif grace is None or grace <= float(drain) + sleep:
            yield (
                f"{where}: terminationGracePeriodSeconds {grace} must exceed the drain timeout "
                f"{drain}s + preStop sleep {sleep}s"
            )


def _wiring_errors(m: Manifests) -> Iterator[str]:
    """Autoscalers, PDBs, Services and ServiceMonitors point at things that exist and make sense."""
    for kind, owners in (("HorizontalPodAutoscaler", m.hpas), ("ScaledObject", m.scaled)):
        yield from (f"{kind}/{n}: targets no Deployment" for n in owners if n not in m.deployments)
    for pdb in m.of("PodDisruptionBudget"):
        where = f"PodDisruptionBudget/{pdb['metadata']['name']}"
        targets = list(m.pods_selected(pdb["spec"]["selector"].get("matchLabels", {})))
        if len(targets) != 1:
            yield f"{where}: selects {len(targets)} Deployments"
        elif m.min_replicas(targets[0]) <= 1:
            yield f"{where}: its Deployment may run a single pod"
    for svc in m.of("Service"):
        pods = m.pods_selected(svc["spec"].get("selector", {})).values()
        ports = {p.get("name") for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])}
        if not pods or any(p["targetPort"] not in ports for p in svc["spec"]["ports"]):
            yield f"Service/{svc['metadata']['name']}: selects no pod exposing its targetPort"
    for mon in m.of("ServiceMonitor"):
        selector = mon["spec"]["selector"].get("matchLabels", {})
        selected = [s for s in m.of("Service") if _selects(selector, s["metadata"]["labels"])]
        ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
        for port in {e["port"] for e in mon["spec"]["endpoints"]} - ports:
            yield f"ServiceMonitor/{mon['metadata']['name']}: no selected Service has port {port}"
    for so in m.of("ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            missing = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} - trigger[
                "metadata"
            ].keys()
            if trigger["type"] == "kafka" and missing:
                yield f"ScaledObject/{so['metadata']['name']}: kafka trigger lacks {sorted(missing)}"


# ---------------------------------------------------------------------------------- settings wiring

# The settings class each `herald <service>` builds (herald_cli.main), by the container's first arg.
SERVICE_SETTINGS = {
    "gateway": ("herald_gateway.settings", "GatewaySettings"),
    "router": ("herald_router.settings", "RouterSettings"),
    "sender": ("herald_sender.settings", "SenderSettings"),
    "tracker": ("herald_tracker.settings", "TrackerSettings"),
    "scheduler": ("herald_scheduler.settings", "SchedulerSettings"),
}
# Least privilege: variables only some workloads may get, by role (gateway, router, sender-<channel>,
# tracker, scheduler). They must be set per workload, never in the ConfigMap every pod reads. A
# variable from the Secret that is missing here is an error too, so new credentials get a scope.
_SCOPES: list[tuple[frozenset[str], tuple[str, ...]]] = [
    (
        frozenset({"gateway"}),
        (
            "HERALD_ADMIN_TOKEN",
            "HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY",
            "HERALD_SENDGRID_WEBHOOK_MAX_AGE_S",
            "HERALD_RECEIPT_DEDUPE_TTL_S",
        ),
    ),
    # The gateway verifies Twilio callbacks; sms senders authenticate with the token and build the
    # callback URL from the public base URL.
    (frozenset({"gateway", "sender-sms"}), ("HERALD_TWILIO_AUTH_TOKEN", "HERALD_PUBLIC_BASE_URL")),
    (frozenset({"router"}), ("HERALD_ROUTER_REPORT_QUEUED",)),
    (
        frozenset({"scheduler"}),
        ("HERALD_SCHEDULER_POLL_INTERVAL_S", "HERALD_SCHEDULER_LEASE_S", "HERALD_SCHEDULER_BATCH"),
    ),
    (
        frozenset({"sender-email", "sender-sms", "sender-push"}),
        (
            "HERALD_RETRY_MAX_ATTEMPTS",
            "HERALD_RETRY_BASE_DELAY_S",
            "HERALD_RETRY_MAX_DELAY_S",
            "HERALD_BREAKER_FAILURE_THRESHOLD",
            "HERALD_BREAKER_COOLDOWN_S",
            "HERALD_RATE_LIMIT_BULK_RESERVE",
        ),
    ),
    (
        frozenset({"sender-email"}),
        (
            "HERALD_EMAIL_PROVIDERS",
            "HERALD_EMAIL_FROM",
            "HERALD_SMTP_HOST",
            "HERALD_SMTP_PORT",
            "HERALD_SMTP_STARTTLS",
            "HERALD_SMTP_POOL_SIZE",
            "HERALD_SMTP_USERNAME",
            "HERALD_SMTP_PASSWORD",
            "HERALD_SENDGRID_BASE_URL",
            "HERALD_SENDGRID_API_KEY",
            "HERALD_SMTP_RATE_PER_S",
            "HERALD_SMTP_BURST",
            "HERALD_SENDGRID_RATE_PER_S",
            "HERALD_SENDGRID_BURST",
            "HERALD_SENDGRID_BATCH_MAX",
            "HERALD_SENDGRID_BATCH_LINGER_MS",
        ),
    ),
    (
        frozenset({"sender-sms"}),
        (
            "HERALD_SMS_PROVIDERS",
            "HERALD_TWILIO_BASE_URL",
            "HERALD_TWILIO_ACCOUNT_SID",
            "HERALD_TWILIO_FROM",
            "HERALD_TWILIO_STATUS_CALLBACK_URL",
            "HERALD_TWILIO_RATE_PER_S",
            "HERALD_TWILIO_BURST",
        ),
    ),
    (
        frozenset({"sender-push"}),
        (
            "HERALD_PUSH_PROVIDERS",
            "HERALD_FCM_BASE_URL",
            "HERALD_FCM_TOKEN_URL",
            "HERALD_FCM_PROJECT_ID",
            "HERALD_FCM_CREDENTIALS_FILE",
            "HERALD_FCM_RATE_PER_S",
            "HERALD_FCM_BURST",
        ),
    ),
]
SCOPED_ENV: dict[str, frozenset[str]] = {var: roles for roles, names in _SCOPES for var in names}
# Every workload may read the Redis URL from a Secret (redis.existingSecret).
SHARED_SECRET_ENV = {"HERALD_REDIS_URL"}
# Stand-ins for Secret values when the settings are built (the Secret itself is not rendered).
SECRET_STAND_INS = {"HERALD_REDIS_URL": "redis://redis.invalid:6379/0"}
SECRET_STAND_IN = "stand-in-secret-value-0123456789"


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def _role(args: list[str]) -> str:
    channel = _arg(args, "--channel")
    return f"{args[0]}-{channel}" if args[0] == "sender" and channel else args[0]


def _settings_class(service: str) -> Any:
    module, name = SERVICE_SETTINGS[service]
    return getattr(importlib.import_module(module), name)


def _settings_errors(where: str, args: list[str], env: dict[str, str]) -> Iterator[str]:
    """Build the service's settings from the rendered environment, as `herald <service>` would."""
    from herald_common.settings import SettingsError, load

    cls = _settings_class(args[0])
    fields = {"HERALD_" + f.upper(): f for f in cls.model_fields}
    values: dict[str, Any] = {fields[k]: v for k, v in env.items() if k in fields}
    if args[0] == "router":
        values["router_lane"] = _arg(args, "--lane") or values.get("router_lane", "transactional")
    if args[0] == "sender":
        values["sender_channel"] = _arg(args, "--channel") or values.get("sender_channel", "email")
        values["sender_lane"] = _arg(args, "--lane") or values.get("sender_lane", "transactional")
    try:
        settings = load(cls, **values)
    except SettingsError as e:
        yield f"{where}: {cls.__name__} rejects the rendered environment: {' '.join(str(e).split())}"
        return
    if args[0] == "sender":
        try:
            settings.providers()
        except ValueError as e:
            yield f"{where}: {e}"


def settings_wiring_errors(m: Manifests) -> Iterator[str]:
    """Each workload gets only variables its service reads, valid ones, and scoped ones only if allowed."""
    for key in sorted(SCOPED_ENV.keys() & {k for data in m.configmaps.values() for k in data}):
        yield f"ConfigMap: {key} reaches every workload; it belongs only to {sorted(SCOPED_ENV[key])}"
    for name, dep in m.deployments.items():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            where, args = f"Deployment/{name}/{c['name']}", [str(a) for a in c.get("args", [])]
            if not args or args[0] not in SERVICE_SETTINGS:
                yield f"{where}: runs no known Herald service ({args[:1]})"
                continue
            role, reads = _role(args), {"HERALD_" + f.upper() for f in _settings_class(args[0]).model_fields}
            env: dict[str, str] = {}
            for source in c.get("envFrom", []):
                env.update(m.configmaps.get(source.get("configMapRef", {}).get("name", ""), {}))
            for item in c.get("env", []):
                var, secret = item["name"], "secretKeyRef" in item.get("valueFrom", {})
                if not var.startswith("HERALD_"):
                    continue
                if var not in reads:
                    yield f"{where}: sets {var}, which {args[0]} does not read"
                if var in SCOPED_ENV and role not in SCOPED_ENV[var]:
                    yield f"{where}: gets {var}, which only {sorted(SCOPED_ENV[var])} may get"
                elif secret and var not in SCOPED_ENV and var not in SHARED_SECRET_ENV:
                    yield f"{where}: gets {var} from a Secret but SCOPED_ENV gives it no scope"
                if "value" in item:
                    env[var] = str(item["value"])
                elif secret:
                    env[var] = SECRET_STAND_INS.get(var, SECRET_STAND_IN)
            yield from _settings_errors(where, args, env)


def invariant_errors(docs: list[Doc]) -> list[str]:
    m = Manifests(docs)
    errors = [e for name, dep in m.deployments.items() for e in _deployment_errors(m, name, dep)]
    for job in m.of("Job"):
        pod = job["spec"]["template"]["spec"]
        for c in pod["containers"]:
            errors += _container_errors(f"Job/{job['metadata']['name']}/{c['name']}", pod, c, probes=False)
    return errors + list(_wiring_errors(m)) + list(settings_wiring_errors(m))


# ----------------------------------------------------------------------------------------- compose

HERALD_COMMANDS = {
    ("topics", "create"),
    ("gateway",),
    ("tracker",),
    ("scheduler",),
    *(("router", "--lane", lane) for lane in ("transactional", "bulk")),
    *(
        ("sender", "--channel", ch, "--lane", lane)
        for ch in ("email", "sms", "push")
        for lane in ("transactional", "bulk")
    ),
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def _healthcheck(svc: Doc) -> list[str]:
    check = svc.get("healthcheck") or {}
    return [] if check.get("disable") else list(check.get("test", []))


def compose_errors(data: Doc | None = None) -> list[str]:
    if data is None:
        text = COMPOSE.read_text()
        if not text.startswith("#"):
            return ["docker-compose.yml: must start with its header comment"]
        data = yaml.safe_load(text)
    services: dict[str, Doc] = data.get("services", {})
    errors = []
    built = {n: s for n, s in services.items() if "build" in s}
    if not built:
        return ["compose: no service builds the Herald image"]
    image = next(iter(built.values())).get("image")
    herald = {n: s for n, s in services.items() if "build" in s or s.get("image") == image}
    for name, svc in herald.items():
        if svc.get("image") != image or svc.get("build") != next(iter(built.values()))["build"]:
            errors.append(f"compose {name}: must use the one Herald image and build ({image})")
    commands = {tuple(s.get("command", [])): n for n, s in herald.items()}
    for expected in sorted(HERALD_COMMANDS):
        if not any(cmd[: len(expected)] == expected for cmd in commands):
            errors.append(f"compose: no service runs `herald {' '.join(expected)}`")
    for prefix in ("apache/kafka", "redis", "axllent/mailpit"):
        if not any(str(s.get("image", "")).startswith(prefix) for s in services.values()):
            errors.append(f"compose: no {prefix} service")
    for name, svc in services.items():
        one_shot = svc.get("restart") == "no"
        check = _healthcheck(svc)
        port = "8080" if commands.get(("gateway",)) == name else "9090"
        if not one_shot and not check:
            errors.append(f"compose {name}: needs a healthcheck")
        elif name in herald and not one_shot and not re.search(rf"urllib.*:{port}/readyz", " ".join(check)):
            errors.append(f"compose {name}: healthcheck must GET :{port}/readyz with python urllib")
        if name in herald:
            role = _role([str(a) for a in svc.get("command", [])] or ["gateway"])
            for var in sorted(svc.get("environment", {}).keys() & SCOPED_ENV.keys()):
                if role not in SCOPED_ENV[var]:
                    errors.append(f"compose {name}: gets {var}, which only {sorted(SCOPED_ENV[var])} may get")
        if name in herald and not one_shot:
            env = svc.get("environment", {})
            if not {"HERALD_KAFKA_BOOTSTRAP", "HERALD_REDIS_URL"} <= env.keys():
                errors.append(f"compose {name}: needs HERALD_KAFKA_BOOTSTRAP and HERALD_REDIS_URL")
            if env.get("HERALD_HEALTH_HOST") != "0.0.0.0" or env.get("HERALD_HTTP_HOST") != "0.0.0.0":
                errors.append(f"compose {name}: HERALD_HEALTH_HOST and HERALD_HTTP_HOST must be 0.0.0.0")
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            errors.append(f"compose {name}: depends_on must give a condition for each dependency")
            continue
        for dep, spec in deps.items():
            condition = (spec or {}).get("condition")
            if dep not in services:
                errors.append(f"compose {name}: depends on unknown service {dep}")
            elif condition not in CONDITIONS:
                errors.append(f"compose {name}: bad condition {condition!r} on {dep}")
            elif condition == "service_healthy" and not _healthcheck(services[dep]):
                errors.append(f"compose {name}: waits for {dep} to be healthy but it has no healthcheck")
            elif condition == "service_completed_successfully" and services[dep].get("restart") != "no":
                errors.append(f"compose {name}: waits for {dep} to complete but it is not a one-shot")
    return errors


def dockerfile_errors(text: str | None = None) -> list[str]:
    """No Docker engine on the development machines, so the Dockerfile's promises are checked as text."""
    text = (ROOT / "Dockerfile").read_text() if text is None else text
    stages = re.split(r"(?m)^FROM ", text)[1:]
    if len(stages) < 2:
        return ["Dockerfile: needs a builder stage and a runtime stage"]
    final = stages[-1]
    wanted = {
        "both stages must build on python:3.11-slim": "python:3.11-slim" in text
        and final.startswith("${PYTHON_IMAGE}"),
        "the runtime stage must run as USER 10001": re.search(r"(?m)^USER 10001\b", final),
        'the entrypoint must be ["herald"]': re.search(r'(?m)^ENTRYPOINT \["herald"\]$', final),
        'the default command must be ["gateway"]': re.search(r'(?m)^CMD \["gateway"\]$', final),
        "the runtime stage must EXPOSE 8080 9090": re.search(r"(?m)^EXPOSE 8080 9090$", final),
        "the runtime stage must not install build tools": not re.search(
            r"build-essential|gcc|apt-get install", final
        ),
    }
    return [f"Dockerfile: {what}" for what, ok in wanted.items() if not ok]


# --------------------------------------------------------------------------------------- dashboard

# The metrics the dashboard must show; any other name must be declared in the metrics module.
METRICS_MODULE = ROOT / "libs" / "herald_common" / "metrics.py"
METRICS = {
    "herald_messages_consumed_total",
    "herald_messages_processed_seconds",
    "herald_deliveries_total",
    "herald_provider_request_seconds",
    "herald_notifications_accepted_total",
    "herald_http_requests_total",
    "herald_http_request_seconds",
    "herald_consumer_lag",
    "herald_retries_scheduled_total",
    "herald_dead_letters_total",
    "herald_inflight_messages",
}


def declared_metrics() -> set[str]:
    if not METRICS_MODULE.exists():
        return set(METRICS)
    return set(re.findall(r'"(herald_\w+)"', METRICS_MODULE.read_text()))


def dashboard_errors(dash: Doc | None = None) -> list[str]:
    if dash is None:
        dash = json.loads(DASHBOARD.read_text())
    declared = declared_metrics()
    errors = [f"dashboard: {m} is not declared in {METRICS_MODULE.name}" for m in sorted(METRICS - declared)]
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
    errors += [f"dashboard: no panel shows {m}" for m in sorted(METRICS - used)]
    return errors


# -------------------------------------------------------------------------------------------- main


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
