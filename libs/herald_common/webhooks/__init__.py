"""Tenant webhooks: endpoints (model, store, health and pause), where they may point (targets), and
the signed deliveries the webhooks service sends (wire). ``herald webhooks`` (services/herald_webhooks)
turns status events into deliveries; the gateway manages endpoints at ``/v1/webhooks``."""
