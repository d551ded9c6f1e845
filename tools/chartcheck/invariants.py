"""Herald's invariants on the rendered objects: grace periods, autoscalers, PDBs, probes, resources,
restricted security contexts, and selectors that select something."""

from __future__ import annotations

from collections.abc import Iterator

from chartcheck.paths import Doc

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


def container_errors(where: str, pod: Doc, container: Doc, *, probes: bool) -> Iterator[str]:
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


def deployment_errors(m: Manifests, name: str, dep: Doc) -> Iterator[str]:
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
        yield from container_errors(f"{where}/{c['name']}", pod, c, probes=True)
        drain, sleep = _env(c, m.configmaps, "HERALD_DRAIN_TIMEOUT_S"), _prestop_sleep(c)
        if drain is None:
            yield f"{where}/{c['name']}: HERALD_DRAIN_TIMEOUT_S is not set"
        elif grace is None or grace <= float(drain) + sleep:
            yield (
                f"{where}: terminationGracePeriodSeconds {grace} must exceed the drain timeout "
                f"{drain}s + preStop sleep {sleep}s"
            )


def wiring_errors(m: Manifests) -> Iterator[str]:
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
