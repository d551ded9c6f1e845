"""What a receipt must prove before the gateway applies it (pure: ids, ages, delivery ids)."""

from __future__ import annotations

import time

from herald_common.ids import NotificationIds, delivery_id
from herald_gateway.receipts import untrusted
from herald_providers.receipts import Ids, Receipt
from herald_providers.receipts_sendgrid import fresh

IDS = NotificationIds(b"k" * 32)
DAY = 86_400.0


def _receipt(tenant: str, nid: str, to: str, *, named: str | None = None) -> Receipt:
    ids = Ids(named or tenant, nid, delivery_id(nid, "sms", to))
    return Receipt("tw:SM1:failed", named or tenant, None, to, ids=ids, channel="sms", address=to)


def test_a_receipt_is_trusted_only_for_its_own_tenant_notification_and_delivery() -> None:
    nid = IDS.new("t1")
    assert untrusted(_receipt("t1", nid, "+447911100001"), IDS, 3 * DAY) is None
    assert untrusted(_receipt("t1", nid, "+447911100001", named="t2"), IDS, 3 * DAY) is not None
    assert untrusted(_receipt("t1", "n_" + "0" * 39, "+447911100001"), IDS, 3 * DAY) is not None
    genuine = _receipt("t1", nid, "+447911100001")
    other_number = Receipt(
        genuine.event_id, "t1", None, "+447911100002", ids=genuine.ids, channel="sms", address="+447911100002"
    )
    assert untrusted(other_number, IDS, 3 * DAY) == "delivery not of that notification and address"


def test_a_receipt_for_an_old_notification_is_stale() -> None:
    nid = IDS.new("t1")
    receipt = _receipt("t1", nid, "+447911100001")
    assert untrusted(receipt, IDS, 3 * DAY, now=time.time() + 2 * DAY) is None
    assert untrusted(receipt, IDS, 3 * DAY, now=time.time() + 4 * DAY) == "stale"
    assert untrusted(receipt, IDS, 3 * DAY, now=time.time() - DAY) == "stale"  # from the future


def test_the_sendgrid_timestamp_check_fails_closed() -> None:
    now = 1_800_000_000.0
    assert fresh(str(int(now) - 60), 600, now)
    for bad in (
        "",
        "nan",
        "inf",
        "-1",
        "1e9",
        " 1800000000",
        "1800000000.0",
        "١٨٠٠٠٠٠٠٠٠",
        str(int(now) - 601),
    ):
        assert not fresh(bad, 600, now), bad
