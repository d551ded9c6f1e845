"""Policy: what decides whether, and when, a notification is sent. The router applies it, in this order,
to every request (each step only to the channels the steps before left sendable):

1. **trigger condition** (events: the trigger's CEL condition) — not met: nothing is sent;
2. **staleness** (events: an event older than the trigger's TTL) — ``expired`` / ``stale``;
3. **consent**, channel x category: a contact's channel opt-out (``opted_out_channel``) or category
   opt-out (``opted_out_category``; transactional ignores category opt-outs) → channel ``suppressed``;
4. **suppression**: every address of a channel on the tenant's suppression list → ``suppressed``,
   the reason code saying why the address is on it (:mod:`herald_common.suppressions`: ``manual``,
   ``unsubscribed``, ``complaint``, ``bounced``, ``invalid_address``; ``suppressed`` for an entry
   made before entries had reasons);
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

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from herald_common.schemas import Tenant

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

# Why an address is on the suppression list (herald_common.suppressions), as a channel's reason code.
MANUAL: Final = "manual"  # added through the API or imported
UNSUBSCRIBED: Final = "unsubscribed"  # the member asked: an unsubscribe event or link, an SMS STOP
COMPLAINT: Final = "complaint"  # a spam report
BOUNCED: Final = "bounced"  # a hard bounce, or a drop for the provider's own suppression list
INVALID_ADDRESS: Final = "invalid_address"  # the provider says the address can never work
SUPPRESSION_CODES: Final = (MANUAL, UNSUBSCRIBED, COMPLAINT, BOUNCED, INVALID_ADDRESS)


def suppression_code(reason: str | None) -> str:
    """The reason code of a channel suppressed for an address on the list for ``reason``."""
    return reason if reason in SUPPRESSION_CODES else SUPPRESSED


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
    *SUPPRESSION_CODES,
    FELL_BACK,
)

TRANSACTIONAL: Final = "transactional"


def is_transactional(category: str, tenant: Tenant | None) -> bool:
    """The one rule for "is this category transactional for this tenant": the ``transactional``
    category, and every category the tenant lists in ``transactional_categories`` (booking
    confirmations, one-time codes). Such a message travels on the transactional lane, ignores category
    opt-outs and quiet hours, and carries no unsubscribe link; frequency caps apply only where a cap
    names its category."""
    return category == TRANSACTIONAL or (tenant is not None and category in tenant.transactional_categories)
