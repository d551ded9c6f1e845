"""The Redis key layout keeps every tenant-scoped key in the tenant's hash slot (what lets Redis Cluster
run the scripts and transactions that combine them), and the global keys carry no hash tag."""

from __future__ import annotations

import inspect

from redis.crc import key_slot

from herald_common.redisio import Keys
from herald_common.triggerstore import TriggerStore

GLOBAL = {"api_key", "id_secret", "receipt_seen", "dead_letter_replayed", "campaigns_active", "delayed"}


def _build(keys: Keys, name: str, tenant: str) -> str:
    method = getattr(keys, name)
    params = list(inspect.signature(method).parameters)
    args = [tenant if p == "tenant_id" else 7 if p in ("partition", "offset") else f"{p}-x" for p in params]
    return str(method(*args))


def test_every_tenant_key_shares_the_tenant_slot_and_global_keys_have_no_tag() -> None:
    keys = Keys("herald")
    names = [n for n, _ in inspect.getmembers(Keys, inspect.isfunction) if not n.startswith("_")]
    tenant_scoped = [
        n for n in names if n != "t" and "tenant_id" in inspect.signature(getattr(keys, n)).parameters
    ]
    assert {"notification", "ledger", "stats", "cancelled_key", "waiting_with_key", "tenant_keys"} <= set(
        tenant_scoped
    )
    for tenant in ("acme", "t0123456789", "other-tenant"):
        slot = key_slot(keys.t(tenant).encode())
        for name in tenant_scoped:
            key = _build(keys, name, tenant)
            assert key.startswith(f"herald:t:{{{tenant}}}:"), key
            assert key_slot(key.encode()) == slot, name
        store = TriggerStore(None, keys)  # type: ignore[arg-type]
        assert key_slot(store.trigger_key(tenant, "order.paid").encode()) == slot
        assert key_slot(store.event_key(tenant, "e1").encode()) == slot
    assert set(names) - set(tenant_scoped) - {"t"} == GLOBAL
    for name in GLOBAL - {"delayed"}:
        assert "{" not in _build(keys, name, "acme"), name
    assert key_slot(keys.delayed("due").encode()) == key_slot(keys.delayed("items").encode())
    assert key_slot(keys.t("acme").encode()) != key_slot(keys.t("globex").encode())
