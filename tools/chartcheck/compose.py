"""docker-compose.yml's structure and the Dockerfile's promises (as text; `make test-image` runs it).
The services compose must run are derived from the ``herald`` command line itself."""

from __future__ import annotations

import re

import yaml

from chartcheck.paths import COMPOSE, ROOT, Doc
from chartcheck.wiring import SCOPED_ENV, herald_commands, role

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
    for expected in sorted(herald_commands()):
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
            who = role([str(a) for a in svc.get("command", [])] or ["gateway"])
            for var in sorted(svc.get("environment", {}).keys() & SCOPED_ENV.keys()):
                if who not in SCOPED_ENV[var]:
                    errors.append(f"compose {name}: gets {var}, which only {sorted(SCOPED_ENV[var])} may get")
        if name in herald and not one_shot:
            env = svc.get("environment", {})
            if not {"HERALD_KAFKA_BOOTSTRAP", "HERALD_REDIS_URL"} <= env.keys():
                errors.append(f"compose {name}: needs HERALD_KAFKA_BOOTSTRAP and HERALD_REDIS_URL")
            listen = ["HERALD_HEALTH_HOST"] + (
                ["HERALD_HTTP_HOST"] if svc.get("command") == ["gateway"] else []
            )
            if any(env.get(var) != "0.0.0.0" for var in listen):
                errors.append(f"compose {name}: {' and '.join(listen)} must be 0.0.0.0")
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
    """The Dockerfile's promises, checked as text here (`make test-image` builds and runs the image)."""
    text = (ROOT / "Dockerfile").read_text() if text is None else text
    stages = re.split(r"(?m)^FROM ", text)[1:]
    if len(stages) < 2:
        return ["Dockerfile: needs a builder stage and a runtime stage"]
    final = stages[-1]
    wanted = {
        "the stages must build on python:3.11-slim (the runtime one flattened from scratch)": (
            "python:3.11-slim" in text and final.startswith(("${PYTHON_IMAGE}", "scratch"))
        ),
        "the runtime stage must run as USER 10001": re.search(r"(?m)^USER 10001\b", final),
        'the entrypoint must be ["herald"]': re.search(r'(?m)^ENTRYPOINT \["herald"\]$', final),
        'the default command must be ["gateway"]': re.search(r'(?m)^CMD \["gateway"\]$', final),
        "the runtime stage must EXPOSE 8080 9090": re.search(r"(?m)^EXPOSE 8080 9090$", final),
        "the runtime stage must not install build tools": not re.search(
            r"build-essential|gcc|apt-get install", final
        ),
    }
    return [f"Dockerfile: {what}" for what, ok in wanted.items() if not ok]
