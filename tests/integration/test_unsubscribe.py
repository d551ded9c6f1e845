"""One-click unsubscribe without a browser, on the real stack: a marketing email to an inline address
carries a List-Unsubscribe link; an RFC 8058 POST to it (no API key) suppresses the address, again and
again with the same answer; forged tokens and other bodies are refused; the hosted page is escaped and
locked down. The page in a real browser: tests/slow/test_pages_browser.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import Infra
from tests.integration.stack import Stack, email_stack
from tests.integration.unsubscribe_support import ONE_CLICK, link, mails, send

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with email_stack(infra, tmp_path_factory.mktemp("unsubscribe")) as s:
        s.api.token = await s.api.new_tenant("<script>alert(1)</script> Cinemas")
        yield s


async def test_one_click_post_per_rfc_8058_without_a_browser(stack: Stack) -> None:
    inline = {
        "to": {"email": "walk-in@example.com"},
        "category": "marketing",
        "content": {"email": {"subject": "Members' night", "text": "Free popcorn"}},
    }
    await send(stack, inline, "sent")
    [mail] = mails(stack, "walk-in@example.com", "Members' night")
    url = link(mail)
    assert "walk-in" not in url
    async with aiohttp.ClientSession() as http:  # no Authorization header: the token is the credential
        for _ in range(2):  # idempotent
            async with http.post(url, data=ONE_CLICK) as resp:
                assert resp.status == 200
                assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        async with http.post(url, data={"List-Unsubscribe": "Yes"}) as resp:
            assert resp.status == 400
        forged = url[:-6] + ("AAAAAA" if not url.endswith("AAAAAA") else "BBBBBB")
        for method in ("GET", "POST"):
            async with http.request(method, forged, data=ONE_CLICK) as resp:
                assert resp.status == 404
                assert "walk-in" not in await resp.text()
    doc = await send(stack, inline, "suppressed")
    assert doc["channels"]["email"]["reason_code"] == "unsubscribed"


async def test_the_page_escapes_the_tenant_and_allows_no_script(stack: Stack) -> None:
    template = {"category": "news", "email": {"subject": "Premieres", "text": "Soon"}}
    assert (await stack.api.call("PUT", "/v1/templates/news", template))[0] == 200
    await stack.api.call("PUT", "/v1/contacts/m-1", {"email": "lea@example.com"})
    await send(stack, {"to": {"contact_id": "m-1"}, "template_id": "news"}, "sent")
    [mail] = mails(stack, "lea@example.com", "Premieres")
    async with aiohttp.ClientSession() as http, http.get(link(mail)) as resp:
        assert resp.status == 200
        page = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; Cinemas" in page
    assert "script-src" not in csp and "default-src 'none'" in csp and "form-action 'self'" in csp
    assert "value='news'" in page and "value='marketing'" in page  # the token's category, and marketing
    assert "transactional" not in page.replace("booking confirmations", "")
