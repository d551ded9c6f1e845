"""The settings wiring of every workload: it gets only ``HERALD_*`` variables its service's settings class
reads, the rendered environment builds that class without an error, and scoped variables reach only
the workloads that need them (least privilege).

Nothing here is a hand-kept list: the services, their settings classes and their command-line options
come from the ``herald`` command line (:mod:`herald_cli.main`), the channels from the channel specs and
the providers' channels from the provider registry. A variable's scope follows from who reads it:

- fields of the shared consumer settings (Kafka, Redis, logging, health, drain) reach everyone;
- any other field reaches only the services whose settings class has it; within the sender, a field
  named after a channel (``email_from``) or a provider (``twilio_*``) reaches only that channel's
  senders, other sender fields (retries, breakers) every sender.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from functools import cache
from typing import Any

from chartcheck.invariants import Manifests

# Every workload may read the Redis URL (redis.existingSecret) and the Kafka SASL credentials
# (kafka.sasl.existingSecret) from a Secret: every service talks to both.
SHARED_SECRET_ENV = {"HERALD_REDIS_URL", "HERALD_KAFKA_SASL_USERNAME", "HERALD_KAFKA_SASL_PASSWORD"}
# Stand-ins for Secret values when the settings are built (the Secret itself is not rendered).
SECRET_STAND_INS = {"HERALD_REDIS_URL": "redis://redis.invalid:6379/0"}
SECRET_STAND_IN = "stand-in-secret-value-0123456789"


def _var(field: str) -> str:
    return "HERALD_" + field.upper()


def settings_class(service: str) -> Any:
    from herald_cli.main import settings_class as load_class

    return load_class(service)


def _services() -> list[str]:
    from herald_cli.main import SERVICE_SETTINGS

    return list(SERVICE_SETTINGS)


def _options(parser: argparse.ArgumentParser) -> dict[str, tuple[str, ...]]:
    """A subcommand's options that take a fixed set of values (``--lane``, ``--channel``)."""
    return {
        action.option_strings[0]: tuple(action.choices)
        for action in parser._actions
        if action.option_strings and action.choices
    }


@cache
def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from herald_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def herald_commands() -> set[tuple[str, ...]]:
    """Every service command line a deployment must run: each service once per combination of its
    option values (``sender --channel sms --lane bulk``), and the one-shot ``topics create``."""
    commands: set[tuple[str, ...]] = {("topics", "create")}
    for service in _services():
        options = _options(_subcommands()[service])
        for combo in itertools.product(*options.values()):
            commands.add((service, *itertools.chain.from_iterable(zip(options, combo, strict=True))))
    return commands


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def role(args: list[str]) -> str:
    """gateway, router, sender-<channel>, tracker, scheduler: what least privilege is decided by."""
    channel = _arg(args, "--channel")
    return f"{args[0]}-{channel}" if args[0] == "sender" and channel else args[0]


def _sender_roles(field: str) -> set[str]:
    from herald_common.channels import CHANNEL_NAMES
    from herald_providers.registry import PROVIDERS

    owners = [ch for ch in CHANNEL_NAMES if field.startswith(ch + "_")]
    owners += [p.channel for name, p in PROVIDERS.items() if field.startswith(name + "_")]
    return {f"sender-{ch}" for ch in (owners or CHANNEL_NAMES)}


@cache
def scoped_env() -> dict[str, frozenset[str]]:
    from herald_common.settings import ConsumerSettings

    shared = set(ConsumerSettings.model_fields)
    scopes: dict[str, set[str]] = {}
    for service in _services():
        for field in settings_class(service).model_fields:
            if field in shared:
                continue
            roles = _sender_roles(field) if service == "sender" else {service}
            scopes.setdefault(_var(field), set()).update(roles)
    return {var: frozenset(roles) for var, roles in scopes.items()}


# Derived from the settings classes when the checks are imported.
SCOPED_ENV: dict[str, frozenset[str]] = scoped_env()


def _settings_errors(where: str, args: list[str], env: dict[str, str]) -> Iterator[str]:
    """Build the service's settings from the rendered environment, as `herald <service>` would."""
    from herald_common.settings import SettingsError, load

    service, cls = args[0], settings_class(args[0])
    fields = {_var(f): f for f in cls.model_fields}
    values: dict[str, Any] = {fields[k]: v for k, v in env.items() if k in fields}
    for option in _options(_subcommands()[service]):  # `--lane bulk` sets <service>_lane, as the CLI does
        value = _arg(args, option)
        if value is not None:
            values[f"{service}_{option.lstrip('-')}"] = value
    try:
        settings = load(cls, **values)
    except SettingsError as e:
        yield f"{where}: {cls.__name__} rejects the rendered environment: {' '.join(str(e).split())}"
        return
    if service == "sender":
        try:
            settings.providers()
        except ValueError as e:
            yield f"{where}: {e}"


def settings_wiring_errors(m: Manifests) -> Iterator[str]:
    """Each workload gets only variables its service reads, valid ones, and scoped ones only if allowed."""
    services = _services()
    for key in sorted(SCOPED_ENV.keys() & {k for data in m.configmaps.values() for k in data}):
        yield f"ConfigMap: {key} reaches every workload; it belongs only to {sorted(SCOPED_ENV[key])}"
    for name, dep in m.deployments.items():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            where, args = f"Deployment/{name}/{c['name']}", [str(a) for a in c.get("args", [])]
            if not args or args[0] not in services:
                yield f"{where}: runs no known Herald service ({args[:1]})"
                continue
            who, reads = role(args), {_var(f) for f in settings_class(args[0]).model_fields}
            env: dict[str, str] = {}
            for source in c.get("envFrom", []):
                env.update(m.configmaps.get(source.get("configMapRef", {}).get("name", ""), {}))
            for item in c.get("env", []):
                var, secret = item["name"], "secretKeyRef" in item.get("valueFrom", {})
                if not var.startswith("HERALD_"):
                    continue
                if var not in reads:
                    yield f"{where}: sets {var}, which {args[0]} does not read"
                if var in SCOPED_ENV and who not in SCOPED_ENV[var]:
                    yield f"{where}: gets {var}, which only {sorted(SCOPED_ENV[var])} may get"
                elif secret and var not in SCOPED_ENV and var not in SHARED_SECRET_ENV:
                    yield f"{where}: gets {var} from a Secret but no settings class scopes it"
                if "value" in item:
                    env[var] = str(item["value"])
                elif secret:
                    env[var] = SECRET_STAND_INS.get(var, SECRET_STAND_IN)
            yield from _settings_errors(where, args, env)
