"""The chart's workloads as containers: render charts/herald with helm (offline), and turn each
Deployment (and the topics Job) into the arguments of one ``podman run`` / ``docker run``.

Each container gets what its pod would: the chart's args, its environment (ConfigMap, Secret keys and
plain values resolved), its memory limit, its security context (read-only root filesystem, no
capabilities, no privilege escalation; the user is the image's own, which the tests compare with the
chart's runAsUser) and its volumes (/tmp as a tmpfs, the FCM credentials file). On the host network
every container needs its own ports, so HERALD_HEALTH_PORT (and the gateway's HERALD_HTTP_PORT) are
the only settings that differ from the chart's."""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from herald_dev.infra import free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "herald"
TOOLS = ROOT / "tools" / "image"
PORT_SETTING = {8080: "HERALD_HTTP_PORT", 9090: "HERALD_HEALTH_PORT"}

Doc = dict[str, Any]


@dataclass
class Workload:
    name: str  # the Deployment's (or Job's) name
    args: list[str]
    env: dict[str, str]
    grace_s: int
    run_as_user: int
    read_only: bool
    memory: str | None = None
    probe_port: int | None = None  # host port of /readyz, None for the topics Job
    files: dict[str, str] = field(default_factory=dict)  # path in the container -> content
    container: str = ""


def render(values: Doc) -> list[Doc]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="herald", namespace="herald", is_install=True)
    docs: list[Doc] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def _memory(limit: str | None) -> str | None:
    if not limit:
        return None
    for suffix, unit in (("Gi", "g"), ("Mi", "m"), ("Ki", "k")):
        if limit.endswith(suffix):
            return limit.removesuffix(suffix) + unit
    return limit


def workloads(docs: list[Doc]) -> list[Workload]:
    """The topics Job first, then every Deployment, as containers to run."""
    config = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    secrets = {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
        for d in docs
        if d["kind"] == "Secret"
    }
    out = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        (spec,) = pod["containers"]
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            env |= config[source["configMapRef"]["name"]]
        for item in spec.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["key"] in secrets.get(ref["name"], {}):
                env[item["name"]] = secrets[ref["name"]][ref["key"]]
            elif not ref.get("optional"):
                raise AssertionError(f"{doc['metadata']['name']}: secret key {ref} is missing")
        files: dict[str, str] = {}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in spec.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume and mount["mountPath"] == "/tmp":
                continue  # every container gets a /tmp tmpfs
            if "secret" not in volume:
                raise AssertionError(f"{doc['metadata']['name']}: cannot mount {volume}")
            data = secrets[volume["secret"]["secretName"]]
            for item in volume["secret"].get("items", []):
                if item["key"] in data:
                    files[f"{mount['mountPath']}/{item['path']}"] = data[item["key"]]
        context = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
        work = Workload(
            name=doc["metadata"]["name"],
            args=list(spec.get("args", [])),
            env=env,
            grace_s=int(pod.get("terminationGracePeriodSeconds", 30)),
            run_as_user=int(context["runAsUser"]),
            read_only=bool(context.get("readOnlyRootFilesystem")),
            memory=_memory(spec.get("resources", {}).get("limits", {}).get("memory")),
            files=files,
        )
        ports = {p["name"]: p["containerPort"] for p in spec.get("ports", [])}
        for container_port, setting in PORT_SETTING.items():
            if container_port in ports.values():
                work.env[setting] = str(free_port())
        if "readinessProbe" in spec:
            probe = spec["readinessProbe"]["httpGet"]
            work.probe_port = int(work.env[PORT_SETTING[ports[probe["port"]]]])
        out.append(work)
    return sorted(out, key=lambda w: w.probe_port is not None)


def engine() -> str:
    """podman or docker, as `make image` chose (tools/image/engine.sh); podman with its settings."""
    os.environ.setdefault("CONTAINERS_CONF", str(TOOLS / "containers.conf"))
    return subprocess.run(
        [str(TOOLS / "engine.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()


def run_args(engine_name: str, image: str, work: Workload, files_dir: Path) -> list[str]:
    args = [
        engine_name,
        "run",
        "--detach",
        "--name",
        work.container,
        "--network=host",
        "--tmpfs=/tmp:rw,size=64m",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]
    if work.read_only:
        args.append("--read-only")
        if engine_name == "podman":
            args.append("--read-only-tmpfs=false")  # only /tmp is writable, as in the pod
    if work.memory:
        args.append(f"--memory={work.memory}")
    for path, content in work.files.items():
        host = files_dir / work.name / Path(path).name
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(content)
        host.chmod(0o644)
        args.append(f"--volume={host}:{path}:ro")
    for key, value in sorted(work.env.items()):
        args += ["--env", f"{key}={value}"]
    return [*args, image, *work.args]
