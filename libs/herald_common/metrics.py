"""Every Prometheus metric Herald exports, declared in one place against one registry.

Units are in the names, counters end in ``_total``, labels are bounded (route templates, channel,
provider, lane, status — never tenant ids, addresses or raw URLs).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "herald_http_requests_total", "HTTP requests answered", ["route", "method", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "herald_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
NOTIFICATIONS_ACCEPTED = Counter(
    "herald_notifications_accepted_total", "Notifications acknowledged by Kafka", ["lane"], registry=REGISTRY
)
MESSAGES_CONSUMED = Counter(
    "herald_messages_consumed_total", "Kafka records consumed", ["service", "topic"], registry=REGISTRY
)
MESSAGE_SECONDS = Histogram(
    "herald_messages_processed_seconds",
    "Time to process one Kafka record",
    ["service"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
MESSAGE_ERRORS = Counter(
    "herald_message_errors_total", "Records whose handler raised (retried)", ["service"], registry=REGISTRY
)
INFLIGHT = Gauge("herald_inflight_messages", "Records being processed", ["service"], registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "herald_consumer_lag",
    "Records behind the partition end",
    ["topic", "partition", "group"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "herald_deliveries_total",
    "Delivery attempts by outcome (sent|failed|retried|dead_lettered|skipped_duplicate|cancelled|fell_back)",
    ["channel", "provider", "status"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "herald_provider_request_seconds",
    "Provider request latency",
    ["channel", "provider"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ROUTED = Counter(
    "herald_routed_total",
    "Router outcomes per channel (routed|suppressed|capped|failed)",
    ["channel", "outcome"],
    registry=REGISTRY,
)
POLICY_OUTCOMES = Counter(
    "herald_policy_outcomes_total",
    "Router outcomes per notification (scheduled|held|cancelled|expired); see herald_common.policy",
    ["outcome"],
    registry=REGISTRY,
)
EVENT_DECISIONS = Counter(
    "herald_event_decisions_total",
    "Trigger rule decisions for loyalty events (notified|condition_false|stale|no_trigger|…)",
    ["reason"],
    registry=REGISTRY,
)
RETRIES_SCHEDULED = Counter(
    "herald_retries_scheduled_total",
    "Deliveries put back for a later attempt",
    ["channel"],
    registry=REGISTRY,
)
FAIR_SHARE_PARKED = Counter(
    "herald_fair_share_parked_total",
    "Bulk deliveries parked in the scheduler because their tenant was ahead of its fair share",
    ["channel"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "herald_dead_letters_total",
    "Records written to a service's dead-letter topic, by service and cause "
    "(poison|attempts_exhausted|expired|refused)",
    ["service", "reason"],
    registry=REGISTRY,
)
STATUS_EVENTS = Counter(
    "herald_status_events_total", "Status events folded by the tracker", ["status"], registry=REGISTRY
)


SCHEDULER_RELEASED = Counter(
    "herald_scheduler_released_total", "Delayed records produced back onto their topics", registry=REGISTRY
)
SCHEDULER_PENDING = Gauge(
    "herald_scheduler_pending", "Delayed records waiting in the scheduler (due or not)", registry=REGISTRY
)
RECEIPTS = Counter(
    "herald_receipts_total",
    "Provider receipts by outcome (applied|duplicate)",
    ["provider", "outcome"],
    registry=REGISTRY,
)
ENGAGEMENT = Counter(
    "herald_engagement_events_total",
    "Members' engagement first recorded per message, and SMS opt-outs/ins "
    "(opened|clicked|unsubscribed|complained|resubscribed)",
    ["channel", "kind"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "herald_webhook_deliveries_total",
    "Tenant webhook delivery attempts by outcome (delivered|failed|dead_lettered|dropped)",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_SECONDS = Histogram(
    "herald_webhook_request_seconds",
    "Time a tenant's webhook endpoint took to answer one delivery attempt",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CAMPAIGN_RECIPIENTS = Counter(
    "herald_campaign_recipients_total",
    "Campaign recipients handled by the campaigns service (fanned_out|cancelled|snapshotted|skipped)",
    ["outcome"],
    registry=REGISTRY,
)
CAMPAIGNS_RUNNING = Gauge(
    "herald_campaigns_running", "Campaigns this campaigns replica is fanning out", registry=REGISTRY
)


def render() -> bytes:
    return generate_latest(REGISTRY)
