"""Push content takes FCM v1's per-platform override blocks, validated, and carries them unrendered;
a tenant's FCM project travels with its push messages as sender identity."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from herald_common.channels import spec
from herald_common.push_overrides import MAX_BLOCK_BYTES
from herald_common.schemas import ChannelContent, PushContent, Tenant, TenantIn, TenantPatch
from herald_common.templating import render_channel

ANDROID = {
    "priority": "HIGH",
    "ttl": "3600s",
    "collapse_key": "rewards",
    "notification": {"channel_id": "rewards", "color": "#ff8800", "notification_priority": "PRIORITY_HIGH"},
    "data": {"deep_link": "app://rewards"},
}
APNS = {
    "headers": {"apns-priority": "10", "apns-collapse-id": "rewards"},
    "payload": {
        "aps": {"sound": "default", "badge": 1, "mutable-content": 1},
        "campaign": "{{ not.rendered }}",
    },
}
WEBPUSH = {
    "headers": {"Urgency": "high"},
    "notification": {"icon": "https://cdn.example.com/i.png", "requireInteraction": True},
    "fcm_options": {"link": "https://cinema.example.com/rewards"},
}


def _push(**blocks: Any) -> dict[str, Any]:
    return {"title": "Reward", "body": "Hi {{ contact.attributes.name }}", **blocks}


def test_push_content_accepts_the_three_platform_blocks_and_fcm_options() -> None:
    content = PushContent.model_validate(
        _push(android=ANDROID, apns=APNS, webpush=WEBPUSH, fcm_options={"analytics_label": "rewards_q4"})
    )
    assert content.android is not None and content.android.priority == "HIGH"


@pytest.mark.parametrize(
    ("blocks", "where"),
    [
        ({"android": {"colour": "#ffffff"}}, ("android", "colour")),  # not an FCM v1 field name
        ({"android": {"notification": {"channelId": "x"}}}, ("android", "notification", "channelId")),
        ({"android": {"priority": "URGENT"}}, ("android", "priority")),
        ({"android": {"ttl": "1 hour"}}, ("android", "ttl")),
        ({"android": {"data": {"points": 250}}}, ("android", "data", "points")),  # FCM data is strings
        ({"android": "HIGH"}, ("android",)),  # objects only
        ({"apns": {"payload": ["aps"]}}, ("apns", "payload")),
        ({"apns": {"aps": {}}}, ("apns", "aps")),  # the APNs payload goes under payload
        (
            {"webpush": {"fcm_options": {"link": "http://insecure.example.com"}}},
            ("webpush", "fcm_options", "link"),
        ),
        ({"webpush": {"notification": "x"}}, ("webpush", "notification")),
        ({"fcm_options": {"analytics_label": "has space"}}, ("fcm_options", "analytics_label")),
        ({"ios": {}}, ("ios",)),
    ],
)
def test_push_content_refuses_what_fcm_v1_would(blocks: dict[str, Any], where: tuple[str, ...]) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        PushContent.model_validate(_push(**blocks))
    locations = [tuple(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc[: len(where)] == where for loc in locations), locations


def test_an_override_block_is_bounded_in_size() -> None:
    big = {"payload": {"aps": {"alert": "x" * MAX_BLOCK_BYTES}}}
    with pytest.raises(pydantic.ValidationError, match="bytes of JSON"):
        PushContent.model_validate(_push(apns=big))
    PushContent.model_validate(_push(apns={"payload": {"aps": {"alert": "x" * (MAX_BLOCK_BYTES - 100)}}}))


def test_rendering_carries_the_blocks_as_given_beside_the_rendered_fields() -> None:
    content = ChannelContent.model_validate({"push": _push(android=ANDROID, apns=APNS, webpush=WEBPUSH)})

    rendered = render_channel(
        content, "push", {"contact": {"attributes": {"name": "Ada"}}, "data": {}, "tenant": {}}
    )

    assert rendered["body"] == "Hi Ada"
    assert rendered["android"] == ANDROID
    assert rendered["apns"] == APNS  # not templated: {{ … }} is sent as written
    assert rendered["webpush"] == WEBPUSH
    assert "fcm_options" not in rendered


def test_push_content_without_blocks_renders_as_before() -> None:
    content = ChannelContent.model_validate({"push": {"title": "t", "body": "b", "data": {"k": "v"}}})
    assert render_channel(content, "push", {"contact": {}, "data": {}, "tenant": {}}) == {
        "title": "t",
        "body": "b",
        "data": {"k": "v"},
    }


def test_a_tenant_fcm_project_is_its_push_sender_identity() -> None:
    tenant = Tenant(id="t1", name="North", fcm_project="cinema-north", created_at=datetime.now(UTC))
    assert spec("push").identity(tenant) == {"fcm_project": "cinema-north"}
    plain = Tenant(id="t2", name="South", created_at=datetime.now(UTC))
    assert spec("push").identity(plain) == {}


@pytest.mark.parametrize("project", ["cinema-north", "my-app-12345", "example.com:cinema-north"])
def test_fcm_project_takes_google_project_ids(project: str) -> None:
    assert TenantIn(name="n", fcm_project=project).fcm_project == project
    assert TenantPatch(fcm_project=project).fcm_project == project


@pytest.mark.parametrize("project", ["../admin", "Cinema North", "a", "x" * 40, "cinema-", "1cinema"])
def test_fcm_project_refuses_what_is_not_a_project_id(project: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        TenantIn(name="n", fcm_project=project)
    with pytest.raises(pydantic.ValidationError):
        TenantPatch(fcm_project=project)
