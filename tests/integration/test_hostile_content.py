"""Hostile content on the running stack: a notification over the queue's record limit is refused at the
gateway (413, not 503), one that only renders above it fails its channel (``too_large``) without
holding back the partition it came from, and header fields never carry control characters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from herald_common.ids import partition_key
from herald_common.kafka import MAX_RECORD_BYTES, crc32_partitioner
from herald_common.topics import Topics
from tests.conftest import Infra
from tests.harness import ADMIN_TOKEN, eventually
from tests.integration.stack import Stack, email_stack, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PARTITIONS = 4


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp_path_factory.mktemp("limits")) as s:
        yield s


async def _tenant(stack: Stack) -> tuple[str, str]:
    """(tenant id, api key)"""
    status, tenant = await stack.api.call("POST", "/admin/v1/tenants", {"name": "T"}, token=ADMIN_TOKEN)
    assert status == 201
    status, key = await stack.api.call(
        "POST", f"/admin/v1/tenants/{tenant['id']}/api-keys", {"name": "k"}, token=ADMIN_TOKEN
    )
    assert status == 201
    return tenant["id"], key["api_key"]


def _partition(tenant_id: str, recipient: str) -> int:
    return crc32_partitioner(partition_key(tenant_id, recipient), list(range(PARTITIONS)), [])


async def test_a_notification_over_the_record_limit_is_413_not_503(stack: Stack) -> None:
    _, key = await _tenant(stack)
    big = "é" * 300_000  # valid for the content model (characters), 600 KB of UTF-8 per field
    body = {
        "to": {"email": "big@example.com"},
        "content": {"email": {"subject": "s", "html": big, "text": big}},
    }
    status, doc = await stack.api.call("POST", "/v1/notifications", body, token=key)
    assert status == 413, doc
    assert str(MAX_RECORD_BYTES) in doc["detail"]
    small = {"to": {"email": "ok@example.com"}, "content": {"email": {"subject": "s", "text": "hi"}}}
    batch = {"notifications": [small, body]}
    status, doc = await stack.api.call("POST", "/v1/notifications:batch", batch, token=key)
    assert status == 413, doc
    assert [e["field"] for e in doc["errors"]] == ["notifications[1]"]


async def test_a_render_over_the_record_limit_fails_its_channel_and_never_blocks_the_partition(
    stack: Stack,
) -> None:
    tenant_a, key_a = await _tenant(stack)
    tenant_b, key_b = await _tenant(stack)
    to_a = "huge@example.com"
    partition = _partition(tenant_a, to_a)
    to_b = next(
        f"b{i}@example.com" for i in range(1000) if _partition(tenant_b, f"b{i}@example.com") == partition
    )
    # 600 KB of data renders twice (html and text): a 1.2 MB delivery, from a 600 KB request
    huge = {
        "to": {"email": to_a},
        "content": {"email": {"subject": "Big", "html": "<p>{{ data.x }}</p>", "text": "{{ data.x }}"}},
        "data": {"x": "é" * 300_000},
    }
    status, a = await stack.api.call("POST", "/v1/notifications", huge, token=key_a)
    assert status == 202, a
    fine = {"to": {"email": to_b}, "content": {"email": {"subject": "Fine", "text": "hello"}}}
    status, b = await stack.api.call("POST", "/v1/notifications", fine, token=key_b)
    assert status == 202, b

    doc = await wait_status(stack, a["id"], "failed", token=key_a)
    assert doc["channels"]["email"]["reason"].startswith("too_large"), doc
    await wait_status(stack, b["id"], "sent", token=key_b)
    assert [m for m in stack.smtp.snapshot() if m.rcpt_to == [to_b]]
    assert not [m for m in stack.smtp.snapshot() if m.rcpt_to == [to_a]]

    # the partition's commit moved past both records: a restart replays neither
    topics = Topics(stack.env.prefix)
    tp = TopicPartition(topics.requests("transactional"), partition)
    group = topics.group("router", "transactional")
    reader = AIOKafkaConsumer(bootstrap_servers=stack.env.bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:

        async def committed_past_both() -> bool:
            return (await reader.committed(tp) or 0) >= 2

        await eventually(committed_past_both, timeout_s=15)
    finally:
        await reader.stop()


async def test_a_subject_rendered_with_a_line_break_fails_and_injects_nothing(stack: Stack) -> None:
    _, key = await _tenant(stack)
    to = "victim@example.com"
    body = {
        "to": {"email": to},
        "content": {"email": {"subject": "Tickets for {{ data.name }}", "text": "hello"}},
        "data": {"name": "Bob\r\nReply-To: thief@evil.example"},
    }
    status, accepted = await stack.api.call("POST", "/v1/notifications", body, token=key)
    assert status == 202, accepted
    doc = await wait_status(stack, accepted["id"], "failed", token=key)
    assert doc["channels"]["email"]["reason"].startswith("invalid_header"), doc
    assert not [m for m in stack.smtp.snapshot() if to in m.rcpt_to]
    assert not [m for m in stack.smtp.snapshot() if "Reply-To" in m.headers]


async def test_header_fields_with_control_characters_are_422_and_the_document_says_so(stack: Stack) -> None:
    tenant_id, key = await _tenant(stack)
    inline = {
        "to": {"email": "a@example.com"},
        "content": {"email": {"subject": "Hi\r\nBcc: x@y.z", "text": "t"}},
    }
    status, doc = await stack.api.call("POST", "/v1/notifications", inline, token=key)
    assert status == 422, doc
    assert doc["errors"][0]["field"] == "content.email.subject"
    template = {"email": {"subject": "Hi {{ data.x }}\n", "text": "t"}}
    status, doc = await stack.api.call("PUT", "/v1/templates/t1", template, token=key)
    assert status == 422, doc
    for patch in ({"email_from_name": "Cinema\r\nBcc: x@y.z"}, {"sms_from": "CINE\nMA"}):
        status, doc = await stack.api.call(
            "PATCH", f"/admin/v1/tenants/{tenant_id}", patch, token=ADMIN_TOKEN
        )
        assert status == 422, (patch, doc)
    status, openapi = await stack.api.call("GET", "/v1/openapi.json")
    assert status == 200
    subject = openapi["components"]["schemas"]["EmailContent"]["properties"]["subject"]
    assert "\\x00-\\x1f" in subject["pattern"]


async def test_a_dead_letter_over_the_record_limit_keeps_its_headers_and_drops_its_value(
    stack: Stack,
) -> None:
    from herald_common.kafka import DLQ_REASON, DLQ_VALUE_DROPPED, DeadLetters, make_producer
    from herald_common.settings import CommonSettings
    from tests.harness import read_topic

    topic = Topics(stack.env.prefix).dead_letters("router")
    producer = make_producer(CommonSettings(kafka_bootstrap=stack.env.bootstrap))  # type: ignore[call-arg]
    await producer.start()
    try:
        value = b"x" * (MAX_RECORD_BYTES - 200)  # fits as it was consumed; not with the headers added
        await DeadLetters(producer, topic, "router").write(
            value, b"k", reason="r" * 500, cause="refused", source_topic="src"
        )
    finally:
        await producer.stop()
    [record] = [r for r in await read_topic(stack.env.bootstrap, topic) if r.key == b"k"]
    headers = dict(record.headers)
    assert record.value is None and headers[DLQ_VALUE_DROPPED] == str(len(value)).encode()
    assert headers[DLQ_REASON] == b"r" * 500
