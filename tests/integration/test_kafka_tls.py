"""Kafka security settings: what every Herald client is given (producer, consumers, admin, dlq), and a
client told to use TLS never falls back to plaintext (against the embedded broker, which listens in
plaintext here)."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from herald_common.kafka import make_producer
from herald_common.kafka.security import client_options
from herald_common.settings import CommonSettings, SettingsError, load
from tests.conftest import Infra

pytestmark = pytest.mark.integration


async def test_a_tls_client_refuses_a_plaintext_broker(infra: Infra) -> None:
    plain = make_producer(load(CommonSettings, kafka_bootstrap=infra.bootstrap))
    await plain.start()  # the same broker answers a plaintext client
    await plain.stop()
    settings = load(CommonSettings, kafka_bootstrap=infra.bootstrap, kafka_security_protocol="SSL")
    producer = make_producer(settings, request_timeout_ms=3000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


def test_sasl_needs_credentials_and_a_client_certificate_needs_its_key() -> None:
    assert client_options(load(CommonSettings)) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    with pytest.raises(SettingsError, match="SASL"):
        load(CommonSettings, kafka_security_protocol="SASL_SSL")
    with pytest.raises(SettingsError, match="KEYFILE"):
        load(CommonSettings, kafka_ssl_certfile="/etc/herald/kafka/tls.crt")
    sasl = load(
        CommonSettings,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="herald",
        kafka_sasl_password="s3cret-value",
    )
    options = client_options(sasl)
    assert options["sasl_mechanism"] == "SCRAM-SHA-256" and options["sasl_plain_password"] == "s3cret-value"
    assert options["ssl_context"] is not None and options["security_protocol"] == "SASL_SSL"
