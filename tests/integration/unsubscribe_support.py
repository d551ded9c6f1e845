"""Helpers of the unsubscribe tests: send and wait, find a captured email, read its one-click link."""

from __future__ import annotations

import re

from herald_dev.smtp_peer import Captured
from tests.integration.stack import Stack, wait_status

ONE_CLICK = {"List-Unsubscribe": "One-Click"}  # the RFC 8058 POST body, as a form
_LINK = re.compile(r"<(http://127\.0\.0\.1:\d+/u/[A-Za-z0-9_-]+)>")


async def send(stack: Stack, body: dict, want: str) -> dict:
    """POST one notification and wait for its overall status ``want``; its status document."""
    status, accepted = await stack.api.call("POST", "/v1/notifications", body)
    assert status == 202, accepted
    return await wait_status(stack, accepted["id"], want)


def mails(stack: Stack, to: str, subject: str) -> list[Captured]:
    return [m for m in stack.smtp.snapshot() if m.rcpt_to == [to] and m.subject == subject]


def link(mail: Captured) -> str:
    """The URL of a captured email's List-Unsubscribe header (which must offer one-click)."""
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = _LINK.fullmatch(mail.headers["List-Unsubscribe"])
    assert match, mail.headers["List-Unsubscribe"]
    return match.group(1)
