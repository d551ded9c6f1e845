"""Where a webhook may point: the one check, used when an endpoint is saved and before every delivery
(an address can change after it was checked).

A target is refused unless its URL is ``https://`` (``http://`` only for an allow-listed host) and
every address its host resolves to is public: private, loopback, link-local, multicast, reserved and
unspecified addresses (IPv4 and IPv6, IPv4-mapped included) are refused, so a tenant cannot make Herald
call into its own network. The operator opens exceptions with ``HERALD_WEBHOOK_ALLOW_HOSTS`` (host
names or addresses, exact) or ``HERALD_WEBHOOK_ALLOW_PRIVATE`` (every private target; local stacks).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_RESOLVE_TIMEOUT_S = 3.0


class TargetSettings(BaseSettings):
    """The operator's exceptions; mixed into the settings of the gateway and the webhooks service."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore", frozen=True)

    webhook_allow_hosts: str = Field(
        "",
        description="comma-separated hosts (names or addresses) webhooks may target even when private, "
        "and over plain http",
    )
    webhook_allow_private: bool = Field(
        False, description="let webhooks target any private, loopback or link-local address"
    )

    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.webhook_allow_hosts.split(",") if h.strip())


class TargetRefused(ValueError):
    """The URL may not be called; the message says why (it is shown to the tenant)."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def _resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=_RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise TargetRefused(f"the host {host!r} could not be resolved") from exc
    return sorted({str(info[4][0]) for info in infos})


async def check_target(url: str, allow_hosts: frozenset[str], allow_private: bool) -> None:
    """Raise :class:`TargetRefused` when ``url`` may not be called."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused("not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise TargetRefused("must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("must not carry credentials")
    allowed = host in allow_hosts
    if parts.scheme == "http" and not allowed:
        raise TargetRefused("must use https (http is only for hosts the operator allow-lists)")
    if allowed or allow_private:
        return
    for address in await _resolve(host, port):
        if not _public(address):
            raise TargetRefused(
                f"{host} resolves to a private, loopback or link-local address; "
                "the operator can allow it with HERALD_WEBHOOK_ALLOW_HOSTS"
            )
