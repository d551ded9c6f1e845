"""Routing ``first`` as pure logic: which plan is sent and where it falls back to, the overall status
of a notification that fell back, and the subscription that finds tenants' events topics."""

from __future__ import annotations

import re

from herald_common.status import overall
from herald_common.topics import Topics
from herald_router.main import subscription
from herald_router.routing import ChannelPlan, pick_first


def test_the_first_sendable_plan_is_sent_and_the_channels_after_it_are_its_fallback() -> None:
    plans = [
        ChannelPlan("push", [], "failed", "no push address", "no_address"),
        ChannelPlan("sms", ["+447911100001"]),
        ChannelPlan("email", [], "suppressed", "opted out", "opted_out_channel"),
    ]
    chosen, fallback = pick_first(plans)
    assert [p.channel for p in chosen] == ["sms"] and fallback == ["email"]
    nothing = [ChannelPlan("push", [], "failed", "no push address", "no_address")]
    assert pick_first(nothing) == (nothing, [])


def test_a_channel_that_fell_back_is_no_disagreement() -> None:
    fell = {"status": "failed", "reason_code": "fell_back"}
    assert overall({}, {"push": fell, "sms": {"status": "sent"}}) == "sent"
    assert overall({}, {"push": fell, "sms": {"status": "failed"}}) == "failed"
    assert overall({}, {"push": {"status": "failed"}, "sms": {"status": "sent"}}) == "partially_failed"
    assert overall({}, {"push": fell}) == "failed"


def test_the_transactional_routers_pattern_takes_tenant_topics_and_nothing_else() -> None:
    topics = Topics("hx")
    pattern = re.compile(subscription(topics, "transactional"))
    assert pattern.match("hx.requests.transactional") and pattern.match("hx.events")
    assert pattern.match(topics.tenant_events("cinema-1"))
    assert topics.tenant_of(topics.tenant_events("cinema-1")) == "cinema-1"
    for other in ("hx.requests.bulk", "hx.status", "hxx.events", "hx.tenant-events.", "hy.tenant-events.a"):
        assert not pattern.match(other), other
    assert topics.tenant_of("hx.events") is None
