"""The same end-to-end path against Apache Kafka and Redis images through testcontainers.

Runs only where a Docker engine answers; elsewhere every test here is skipped with the reason. The
default suite covers the same behaviour on the embedded broker and Valkey server."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Infra
from tests.harness import eventually
from tests.integration.stack import email_stack

pytestmark = [pytest.mark.containers, pytest.mark.integration, pytest.mark.timeout(300)]


def _docker_reason() -> str | None:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:
        return (
            f"no Docker engine answers ({type(exc).__name__}); the embedded broker and Valkey cover this path"
        )
    return None


@pytest.fixture(scope="module")
def image_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    reason = _docker_reason()
    if reason:
        pytest.skip(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
        RedisContainer("redis:7.4") as redis,
    ):
        url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        yield Infra(kafka.get_bootstrap_server(), url, 0, tmp_path_factory.mktemp("images"))


async def test_notification_reaches_smtp_on_kafka_and_redis_images(
    image_infra: Infra, tmp_path: Path
) -> None:
    async with email_stack(image_infra, tmp_path) as stack:
        stack.api.token = await stack.api.new_tenant()
        status, body = await stack.api.call(
            "POST",
            "/v1/notifications",
            {
                "to": {"email": "image@example.com"},
                "content": {"email": {"subject": "On images", "text": "ok"}},
            },
        )
        assert status == 202, body
        await eventually(lambda: any(m.subject == "On images" for m in stack.smtp.snapshot()), timeout_s=60)
