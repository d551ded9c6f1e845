"""Policy: what decides whether, and when, a notification is sent. The router applies it, in this order,
to every request (each step only to the channels the steps before left sendable):

1. **trigger condition** (events: the trigger's CEL condition) — not met: nothing is sent;
2. **staleness** (events: an event older than the trigger's TTL) — ``expired`` / ``stale``;
3. **consent**, channel x category: a contact's channel opt-out (``opted_out_channel``) or category
   opt-out (``opted_out_category``; transactional ignores category opt-outs) → channel ``suppressed``;
4. **suppression**: every address of a channel on the tenant's suppression list → ``suppressed``
   (``suppressed``);
5. **frequency caps** (:mod:`herald_common.caps`): over a cap of the notification's category for the
   contact → channels ``capped`` (``frequency_cap``); transactional is exempt unless a cap names it;
6. **quiet hours** (:mod:`herald_common.quiet_hours`): a non-transactional notification inside the
   contact's (else the tenant's) quiet window → ``held`` (``quiet_hours``), handed to the scheduler
   and routed again when the window ends;
7. **expiry**: past ``expires_at`` (or held past it) → ``expired`` (``expired``).

Before any of these, a request that was cancelled (:mod:`herald_common.cancel`: by id, or by its
cancellation key before it was accepted) reads ``cancelled`` (``cancelled``), and one whose ``send_at``
is still ahead is ``scheduled`` (``send_at``) and handed to the scheduler; both are checked again when
it comes back. The sender checks cancellation once more just before calling the provider.

Every outcome is a status with a human ``reason`` and a machine-readable ``reason_code`` (below).
"""

from __future__ import annotations

from typing import Final

# Machine-readable reasons (``reason_code`` on a status).
OPTED_OUT_CHANNEL: Final = "opted_out_channel"
OPTED_OUT_CATEGORY: Final = "opted_out_category"
SUPPRESSED: Final = "suppressed"
FREQUENCY_CAP: Final = "frequency_cap"
QUIET_HOURS: Final = "quiet_hours"
EXPIRED: Final = "expired"
CANCELLED: Final = "cancelled"
SEND_AT: Final = "send_at"
UNKNOWN_CONTACT: Final = "unknown_contact"
TEMPLATE_NOT_FOUND: Final = "template_not_found"
NO_ADDRESS: Final = "no_address"
NO_CONTENT: Final = "no_content"
RENDER_ERROR: Final = "render_error"
# routing ``first``: this channel failed for good and the notification moved on to the next channel.
FELL_BACK: Final = "fell_back"

REASON_CODES: Final = (
    OPTED_OUT_CHANNEL,
    OPTED_OUT_CATEGORY,
    SUPPRESSED,
    FREQUENCY_CAP,
    QUIET_HOURS,
    EXPIRED,
    CANCELLED,
    SEND_AT,
    UNKNOWN_CONTACT,
    TEMPLATE_NOT_FOUND,
    NO_ADDRESS,
    NO_CONTENT,
    RENDER_ERROR,
    FELL_BACK,
)

TRANSACTIONAL: Final = "transactional"
