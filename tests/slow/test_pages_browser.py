"""The browser pages in a real headless Chromium, end to end on the real stack: a marketing email's
List-Unsubscribe link opens the hosted page, its button opts the member out, and the next marketing
email is suppressed while a transactional one still arrives; the outbox page opens a captured email
(headers, text, sandboxed HTML), filters by kind and shows a verified webhook delivery. Screenshots go
to var/test-artifacts/. (Chromium takes a few seconds to start, hence the slow tier; the one-click POST
without a browser is in tests/integration/test_unsubscribe.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from standardwebhooks import Webhook

from herald_dev.infra import free_port
from herald_dev.outbox import Outbox
from herald_dev.outbox_pages import outbox_app
from herald_dev.peers.webhook_peer import PATH as WEBHOOK_PATH
from herald_dev.peers.webhook_peer import WebhookReceiver
from tests.browser import Browser, Page, artifact, chromium
from tests.conftest import Infra
from tests.harness import eventually
from tests.integration.stack import Stack, email_stack
from tests.integration.unsubscribe_support import link, mails, send

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

OFFERS = {
    "category": "marketing",
    "email": {
        "subject": "This week at the cinema",
        "html": "<h1 style='color:#a00'>Two for one</h1><p>Hi {{ contact.first_name }}</p>",
        "text": "Two for one, {{ contact.first_name }}",
    },
}
BOOKING = {"category": "transactional", "email": {"subject": "Booking confirmed", "text": "Seat F7"}}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    chromium()  # skip (fail in CI) before starting anything when there is no browser
    async with email_stack(infra, tmp_path_factory.mktemp("pages")) as s:
        s.api.token = await s.api.new_tenant("Embassy Cinemas")
        for template_id, template in (("offers", OFFERS), ("booking", BOOKING)):
            status, body = await s.api.call("PUT", f"/v1/templates/{template_id}", template)
            assert status == 200, body
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Page]:
    async with Browser.launch(tmp_path_factory.mktemp("chromium")) as p:
        yield p


async def test_unsubscribe_page_opts_out_and_only_marketing_stops(stack: Stack, page: Page) -> None:
    contact = {"email": "ana@example.com", "attributes": {"first_name": "Ana"}}
    assert (await stack.api.call("PUT", "/v1/contacts/m-ana", contact))[0] == 200
    offers = {"to": {"contact_id": "m-ana"}, "template_id": "offers"}
    await send(stack, offers, "sent")
    [mail] = mails(stack, "ana@example.com", "This week at the cinema")
    url = link(mail)
    assert "ana" not in url.lower()

    await page.goto(url)
    assert await page.eval("document.querySelector('h1').textContent") == "Email from Embassy Cinemas"
    boxes = await page.eval("[...document.querySelectorAll('input[name=category]')].map(b => b.value)")
    assert boxes == ["marketing"]
    await page.click("#unsubscribe button", navigates=True)
    notice = await page.eval("document.getElementById('notice').textContent")
    assert notice == "You are unsubscribed from marketing email."
    assert await page.eval("document.querySelector('input[value=marketing]').checked") is False
    await page.screenshot(artifact("unsubscribe-page.png"))

    _, saved = await stack.api.call("GET", "/v1/contacts/m-ana")
    assert saved["preferences"]["categories"] == {"marketing": False}
    doc = await send(stack, offers, "suppressed")
    assert doc["channels"]["email"]["reason_code"] == "opted_out_category"
    await send(stack, {"to": {"contact_id": "m-ana"}, "template_id": "booking"}, "sent")
    [booking] = mails(stack, "ana@example.com", "Booking confirmed")
    assert "List-Unsubscribe" not in booking.headers  # transactional: no link, still delivered
    assert len(mails(stack, "ana@example.com", "This week at the cinema")) == 1

    # Back on the page: keep marketing after all, then leave every marketing category at once.
    await page.click("input[value=marketing]")
    await page.click("#preferences button", navigates=True)
    assert await page.eval("document.getElementById('notice').textContent") == "Your preferences are saved."
    assert (await stack.api.call("GET", "/v1/contacts/m-ana"))[1]["preferences"]["categories"] == {
        "marketing": True
    }
    await page.click("input[name=all_marketing]")
    await page.click("#preferences button", navigates=True)
    _, saved = await stack.api.call("GET", "/v1/contacts/m-ana")
    assert saved["preferences"]["categories"] == {"marketing": False}


@dataclass
class LocalPages:
    outbox_url: str
    webhook_url: str
    outbox: Outbox
    receiver: WebhookReceiver


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local(stack: Stack) -> AsyncIterator[LocalPages]:
    """The outbox page over the stack's outbox, and the local webhook receiver writing into it."""
    assert stack.smtp.outbox is not None
    outbox = Outbox(stack.smtp.outbox.root)
    receiver = WebhookReceiver(SECRET, outbox=outbox)
    urls, runners = [], [web.AppRunner(outbox_app(outbox)), web.AppRunner(receiver.app())]
    for runner in runners:
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        urls.append(f"http://127.0.0.1:{port}")
    try:
        yield LocalPages(urls[0] + "/", urls[1] + WEBHOOK_PATH, outbox, receiver)
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_outbox_opens_a_message_filters_and_shows_webhooks(
    stack: Stack, page: Page, local: LocalPages
) -> None:
    url = local.outbox_url
    contact = {"email": "otto@example.com", "attributes": {"first_name": "Otto"}}
    await stack.api.call("PUT", "/v1/contacts/m-otto", contact)
    await send(stack, {"to": {"contact_id": "m-otto"}, "template_id": "offers"}, "sent")
    local.outbox.write("sms", {"provider": "twilio", "to": "+447700900123", "text": "Your code is 4242"})
    await page.goto(url)
    await page.wait_for("document.querySelector('tr.row td:nth-child(4)')?.textContent === '+447700900123'")

    # A row opens the captured email: headers (List-Unsubscribe too), text, HTML in a sandboxed frame.
    email_row = "[...document.querySelectorAll('tr.row')].find(r => r.textContent.includes('otto@'))"
    await page.eval(f"{email_row}.classList.add('pick')")
    await page.click("tr.pick", navigates=True)
    headers = await page.eval(
        "Object.fromEntries([...document.querySelectorAll('#headers tr')]"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent]))"
    )
    assert headers["List-Unsubscribe"].startswith(f"<{stack.base_url}/u/")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert await page.eval("document.getElementById('text').textContent") == "Two for one, Otto"
    assert await page.eval("document.getElementById('html').getAttribute('sandbox')") == ""
    await page.wait_for("document.getElementById('html').contentWindow !== null")
    await eventually(lambda: _frame_heading(page), timeout_s=10)
    await page.screenshot(artifact("outbox-message.png"))

    # A webhook delivery the local receiver verified shows up by itself, and the filter keeps to a kind.
    await page.goto(url + "?channel=webhooks")
    payload = {"type": "notification.status", "data": {"notification_id": "n_1", "status": "sent"}}
    await _deliver_webhook(local.webhook_url, payload)
    await page.wait_for("document.querySelectorAll('tr.row').length === 1", timeout_s=10)
    channels = await page.eval(
        "[...document.querySelectorAll('tr.row td:nth-child(2)')].map(t => t.textContent)"
    )
    assert channels == ["webhooks"]
    await page.click("tr.row", navigates=True)
    record = await page.eval("document.getElementById('record').textContent")
    assert '"notification.status"' in record and '"verified": true' in record
    await page.goto(url + "?channel=sms")
    await page.wait_for("document.querySelectorAll('tr.row').length === 1")
    await page.click("#filter-all", navigates=True)
    await page.wait_for("document.querySelectorAll('tr.row').length >= 3")
    await page.screenshot(artifact("outbox-list.png"))


async def _frame_heading(page: Page) -> bool:
    try:
        text = await page.frame_eval("document.querySelector('h1')?.textContent")
    except (AssertionError, KeyError, IndexError, RuntimeError):
        return False
    return bool(text == "Two for one")


async def _deliver_webhook(url: str, payload: dict) -> None:
    """Sign and post one delivery as Herald's webhooks service would; the receiver verifies it."""
    body = orjson.dumps(payload).decode()
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign("msg_1", now, body),
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 204
