"""Unsubscribe tokens: they open only here, unaltered, and show nothing of whom they speak for."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from herald_common.schemas import Tenant
from herald_common.unsubscribe import Claim, Links, Tokens, is_marketing, link_key

KEY = link_key(None, b"installation-id-secret")


def test_a_token_round_trips_and_hides_the_address() -> None:
    tokens = Tokens(KEY)
    claim = Claim("t_1", "address", "ana.silva@example.com", "marketing", 1_700_000_000)
    token = tokens.issue(claim)
    assert tokens.open(token) == claim
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"ana" not in raw and b"example" not in raw and b"t_1" not in raw
    assert "ana" not in token and len(token) < 200


def test_forged_altered_or_foreign_tokens_do_not_open() -> None:
    tokens = Tokens(KEY)
    token = tokens.issue(Claim("t_1", "contact", "m-1", "news", 1))
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    assert tokens.open(flipped) is None
    assert tokens.open(token[:-2]) is None
    assert tokens.open("") is None and tokens.open("not a token!") is None and tokens.open("é" * 10) is None
    assert Tokens(link_key("another-secret", b"x")).open(token) is None
    assert Tokens(link_key(None, b"other-installation")).open(token) is None


def test_the_own_secret_wins_over_the_id_secret() -> None:
    assert link_key("s3cret", b"a") == link_key("s3cret", b"b") != link_key(None, b"a")


def test_links_go_to_the_contact_else_the_inline_address() -> None:
    links = Links(Tokens(KEY), "https://herald.example/")
    url = links.url("t_1", "news", contact_id="m-1", address="a@example.com")
    assert url is not None and url.startswith("https://herald.example/u/")
    claim = Tokens(KEY).open(url.rsplit("/", 1)[1])
    assert claim is not None and (claim.kind, claim.subject, claim.category) == ("contact", "m-1", "news")
    inline = links.url("t_1", "news", contact_id=None, address="a@example.com")
    claim = Tokens(KEY).open(str(inline).rsplit("/", 1)[1])
    assert claim is not None and (claim.kind, claim.subject) == ("address", "a@example.com")
    assert links.url("t_1", "news", contact_id=None, address=None) is None


def test_marketing_is_neither_transactional_nor_a_transactional_category_of_the_tenant() -> None:
    tenant = Tenant(id="t_1", name="C", transactional_categories=["booking"], created_at=datetime.now(UTC))
    assert is_marketing("marketing", tenant) and is_marketing("news", None)
    assert not is_marketing("transactional", tenant) and not is_marketing("booking", tenant)
