"""Every provider Herald can deliver through, collected from the adapter modules.

Each adapter module declares its :class:`~herald_providers.base.ProviderSpec` as ``SPEC``: its name and
channel, how it is built from the sender's settings (on the sender's shared aiohttp session when it
speaks HTTP), which account its rate limit belongs to, which settings it cannot do without, whether it
batches, and how its receipts are read if it posts any. Adding a provider is one module here (listed
in ``_MODULES``), one protocol peer in ``herald_dev.peers`` and chart values; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Mapping

from herald_providers import fcm, sendgrid, smtp, twilio
from herald_providers.base import ProviderSpec, ReceiptParser

_MODULES = (smtp, sendgrid, twilio, fcm)

PROVIDERS: Mapping[str, ProviderSpec] = {m.SPEC.name: m.SPEC for m in _MODULES}


def provider(name: str, providers: Mapping[str, ProviderSpec] = PROVIDERS) -> ProviderSpec:
    """The spec of ``name``; ValueError naming the known providers for anything else."""
    try:
        return providers[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(providers)}") from None


def for_channel(channel: str, providers: Mapping[str, ProviderSpec] = PROVIDERS) -> list[ProviderSpec]:
    """The providers that deliver ``channel``, in declaration order."""
    return [p for p in providers.values() if p.channel == channel]


def default_providers(channel: str, providers: Mapping[str, ProviderSpec] = PROVIDERS) -> str:
    """The comma-separated default of ``HERALD_<CHANNEL>_PROVIDERS``."""
    return ",".join(p.name for p in for_channel(channel, providers) if p.default)


def parse_names(
    raw: str, channel: str | None = None, providers: Mapping[str, ProviderSpec] = PROVIDERS
) -> list[str]:
    """A ``HERALD_<CHANNEL>_PROVIDERS`` value as provider names in failover order; ValueError for an
    unknown provider or (given ``channel``) one that does not deliver it."""
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in providers]
    if not names or unknown:
        raise ValueError(f"expected a comma-separated list of {', '.join(providers)}")
    wrong = [n for n in names if channel is not None and providers[n].channel != channel]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} cannot deliver {channel}")
    return names


def providers_variable(channel: str) -> str:
    return f"HERALD_{channel.upper()}_PROVIDERS"


def missing_for_channel(
    channel: str, env: Mapping[str, str], providers: Mapping[str, ProviderSpec] = PROVIDERS
) -> list[str]:
    """What keeps ``channel``'s senders from building their providers under ``env`` (the ``HERALD_*``
    variables they would start with): the missing variables, or the provider list's own error."""
    raw = env.get(providers_variable(channel)) or default_providers(channel, providers)
    try:
        names = parse_names(raw, channel, providers)
    except ValueError as exc:
        return [f"{providers_variable(channel)}: {exc}"]
    return [f"{var} is not set" for name in names for var in providers[name].missing_env(env)]


def receipt_parser(name: str, providers: Mapping[str, ProviderSpec] = PROVIDERS) -> ReceiptParser | None:
    """How ``POST /v1/receipts/<name>`` is read; None when no such provider posts receipts."""
    spec = providers.get(name)
    return spec.receipts if spec is not None else None


__all__ = [
    "PROVIDERS",
    "ProviderSpec",
    "default_providers",
    "for_channel",
    "missing_for_channel",
    "parse_names",
    "provider",
    "providers_variable",
    "receipt_parser",
]
