"""Campaigns: one template sent to an audience of up to millions, throttled, with progress and a record
per recipient.

Lifecycle (``state``), every transition one atomic Redis script (:mod:`.store`)::

    draft ──:start──▶ scheduled (send_at ahead) ──when due──▶ running ──fan-out done──▶ completed
      │                  │                                    │   ▲
      │                  └──────────:pause──────────▶ paused ◀┘   └──:resume──
      └──────────── :cancel (from any state but completed) ──────────▶ cancelled

- **draft**: the audience may be uploaded (``POST /v1/campaigns/{id}/audience``, appended, deduplicated);
  the rate may be changed in any state but the final ones.
- **running**: a ``herald campaigns`` replica holds the campaign's lease (:mod:`.lease`), snapshots the
  recipients once (the uploaded audience, or the tenant's contacts, filtered by the ``segment``), then
  fans out in batches through :mod:`herald_common.intake`, each batch followed by a checkpoint.
- **paused**: fan-out stops at the next batch (within a second); bulk senders park deliveries of a
  paused campaign in the scheduler instead of calling the provider (:mod:`.gate`); ``:resume`` goes on
  from the checkpoint.
- **cancelled**: fan-out stops, what is queued but unsent is cancelled by the campaign's cancellation
  key (``campaign:<id>``), and every recipient not fanned out yet is recorded ``cancelled``.

Exactly once per recipient, by construction: recipient ``c``'s notification id is derived from
(campaign, ``c``) (:func:`recipient_notification_id`); a batch replayed after a crash between produce
and checkpoint publishes the same ids, which the senders' delivery ledger sends once.
"""

from herald_common.campaigns.model import (
    FINAL_STATES,
    OUTCOMES,
    Campaign,
    CampaignIn,
    CampaignPatch,
    State,
    recipient_notification_id,
)

__all__ = [
    "FINAL_STATES",
    "OUTCOMES",
    "Campaign",
    "CampaignIn",
    "CampaignPatch",
    "State",
    "recipient_notification_id",
]
