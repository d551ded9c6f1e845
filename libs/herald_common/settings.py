"""Typed settings, one object per service, read once at start from ``HERALD_*`` variables.

Entry points build their settings with :func:`load`; nothing deeper reads ``os.environ``.
A bad value stops the process at start with one line per offending variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Lane = Literal["transactional", "bulk"]
Channel = Literal["email", "sms", "push"]
LANES: tuple[Lane, ...] = ("transactional", "bulk")
CHANNELS: tuple[Channel, ...] = ("email", "sms", "push")


class SettingsError(SystemExit):
    """Raised (as a clean exit with status 2) when the environment holds an invalid setting."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    kafka_topic_prefix: str = Field(
        "herald", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="prefix of every topic and consumer group"
    )
    kafka_session_timeout_ms: int = Field(
        10_000,
        ge=1_000,
        le=300_000,
        description="consumer session timeout: how soon a dead replica's partitions move",
    )
    kafka_heartbeat_interval_ms: int = Field(
        1_000, ge=100, le=60_000, description="consumer heartbeat interval"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="PLAINTEXT, SSL (TLS, mutual with a client certificate), SASL_SSL or SASL_PLAINTEXT",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (required with SASL_*)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (required with SASL_*)")
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates (unset: the system's)"
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="client certificate for mutual TLS (with HERALD_KAFKA_SSL_KEYFILE)"
    )
    kafka_ssl_keyfile: Path | None = Field(None, description="private key of that client certificate")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://, rediss:// (TLS) or unix:// URL; redis+cluster:// or rediss+cluster:// "
        "(any node of a Redis Cluster) for the cluster client",
    )
    redis_prefix: str = Field(
        "herald", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="prefix of every Redis key"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning, error"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json, console, or auto (console on a terminal, JSON otherwise)"
    )
    health_host: str = Field(
        "127.0.0.1", description="address of the /healthz, /readyz, /metrics server (0.0.0.0 in pods)"
    )
    health_port: int = Field(
        9090,
        ge=0,
        le=65535,
        description="port of that server (the gateway's /metrics is only there, never on its API port)",
    )
    drain_timeout_s: float = Field(
        20.0,
        gt=0,
        le=600,
        description="on SIGTERM, how long in-flight work may take before the process exits",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")):
            raise ValueError(
                "must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
            )
        return v

    @model_validator(mode="after")
    def _kafka_security(self) -> CommonSettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                "HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD are required with SASL"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("HERALD_KAFKA_SSL_CERTFILE and HERALD_KAFKA_SSL_KEYFILE go together")
        return self

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{part!r} is not host:port")
        return v


FETCH_WAIT_MS = {"latency": 100, "throughput": 500}  # unset consumer_fetch_max_wait_ms, by consumer


class ConsumerSettings(CommonSettings):
    consumer_concurrency: int = Field(64, ge=1, le=10_000, description="messages processed at once")
    consumer_max_batch: int = Field(500, ge=1, le=100_000, description="records fetched per poll")
    consumer_fetch_max_bytes: int = Field(
        2**20,
        ge=2**16,
        le=50 * 2**20,
        description="bytes one fetch brings at most (bounds the records held before they are handled)",
    )
    consumer_fetch_max_wait_ms: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description=(
            "how long a fetch that finds nothing may wait for records; unset: 100 for the transactional "
            "lane's router and senders (up to that per hop with a broker that answers only at the end of "
            "the wait), 500 elsewhere (fewer idle fetches)"
        ),
    )
    consumer_commit_interval_s: float = Field(
        0.5, gt=0, le=300, description="how often handled offsets are committed (also on drain and rebalance)"
    )

    def fetch_max_wait_ms(self, latency_sensitive: bool) -> int:
        if self.consumer_fetch_max_wait_ms is not None:
            return self.consumer_fetch_max_wait_ms
        return FETCH_WAIT_MS["latency" if latency_sensitive else "throughput"]


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment (plus explicit overrides) or exit with a clear message."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "HERALD_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


__all__ = ["CHANNELS", "LANES", "Channel", "CommonSettings", "ConsumerSettings", "Lane", "SecretStr", "load"]
