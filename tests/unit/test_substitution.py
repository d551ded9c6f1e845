"""Skeletons and substitutions: which templates are substitutable, and expand(skeleton) == full render."""

from __future__ import annotations

from typing import Any

import pytest

from herald_common.schemas import ChannelContent, ContactIn
from herald_common.substitution import CONTENT_FIELD, MARK, expand, expand_text
from herald_common.templating import render_channel, render_skeleton, template_context
from herald_router.personalise import Personaliser

DATA = {"film": "Dune", "shows": ["18:00", "21:00"], "flag": True}


def _email(
    html: str, subject: str = "Hi {{ contact.first_name }}", text: str | None = None
) -> ChannelContent:
    return ChannelContent.model_validate({"email": {"subject": subject, "html": html, "text": text}})


def _ctx(contact: ContactIn | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return template_context(tenant_id="t1", tenant=None, data=DATA if data is None else data, contact=contact)


SKELETON_CTX = {**_ctx(), "contact": {}}

SUBSTITUTABLE = [
    "<p>{{ contact.first_name }}</p>",
    "{{ contact.attributes.points }} {{ contact.attributes['points'] }} {{ contact['first_name'] }}",
    "{{ contact.first_name | default('friend') }} {{ contact.nick | d('pal', true) }}",
    "{% if data.flag %}{{ contact.first_name }}{% else %}x{% endif %}",
    "{% for s in data.shows %}{{ s }}: {{ contact.first_name }} {% endfor %}",
    "{% with f = data.film %}{{ f }} {{ contact.first_name }}{% endwith %}",
    "no contact here: {{ data.film }}",
]

NOT_SUBSTITUTABLE = [
    "{% if contact.first_name %}hi{% endif %}",  # a condition on the contact
    "{{ contact.first_name | upper }}",  # a filter
    "{{ contact.first_name | default(data.film) }}",  # a default that is not a constant
    "{{ contact.points is number }}",  # a test
    "{{ contact.points + 1 }}",  # an expression
    "{{ contact.first_name ~ '!' }}",
    "{{ 'x' if contact.vip else 'y' }}",
    "{% for t in contact.tags %}{{ t }}{% endfor %}",  # a loop over the contact
    "{% for s in data.shows if contact.vip %}{{ s }}{% endfor %}",
    "{% macro m(c) %}{{ c.first_name }}{% endmacro %}{{ m(contact) }}",  # contact passed to a macro
    "{% macro m() %}{{ contact.first_name }}{% endmacro %}{{ m() | upper }}",  # printed inside a macro
    "{% set n = contact.first_name %}{{ n }}",
    "{% set n %}{{ contact.first_name }}{% endset %}{{ n | length }}",
    "{% filter upper %}{{ contact.first_name }}{% endfilter %}",
    "{% autoescape false %}{{ contact.first_name }}{% endautoescape %}",
    "{{ contact }}",
    "{{ contact[data.film] }}",  # a key that is not a constant
    "{% for contact in data.shows %}{{ contact }}{% endfor %}",  # contact rebound
    "{% with contact = data %}{{ contact.film }}{% endwith %}",
    "{{ contact.first_name }} {{ oops",  # does not compile: the full render reports it
]


@pytest.mark.parametrize("html", SUBSTITUTABLE)
def test_plain_outputs_of_contact_chains_are_substitutable(html: str) -> None:
    assert render_skeleton(_email(html), "email", SKELETON_CTX) is not None


@pytest.mark.parametrize("html", NOT_SUBSTITUTABLE)
def test_anything_else_about_the_contact_is_rendered_in_full(html: str) -> None:
    assert render_skeleton(_email(html, subject="s"), "email", SKELETON_CTX) is None


def test_tokens_never_collide_with_the_template_or_its_data() -> None:
    # U+2063 in the template's own text, or in data printed into it: the skeleton is not used
    assert (
        render_skeleton(_email(f"{{{{ contact.first_name }}}}{MARK}subject0{MARK}"), "email", SKELETON_CTX)
        is None
    )
    ctx = {**_ctx(data={"film": f"{MARK}html0{MARK}"}), "contact": {}}
    assert render_skeleton(_email("{{ contact.first_name }} {{ data.film }}"), "email", ctx) is None
    # distinct tokens per field, so html values can be escaped and text values not
    skeleton = render_skeleton(
        _email("<b>{{ contact.first_name }}</b>", text="{{ contact.first_name }}"), "email", SKELETON_CTX
    )
    assert skeleton is not None
    tokens = {t for part in skeleton.parts for t in part.counts}
    assert len(tokens) == 3 and all(t.startswith(MARK) and t.endswith(MARK) for t in tokens)


CONTACTS = [
    ContactIn(email="a@example.com", attributes={"first_name": "Ann", "points": 120}),
    ContactIn(email="b@example.com", attributes={"first_name": '<Bob & "Co">', "points": 0, "nick": ""}),
    ContactIn(email="c@example.com", attributes={"points": 3.5, "vip": True}),  # no first name
    ContactIn(email="d@example.com", attributes={"first_name": "Zoë 🎬", "points": None, "nick": "Z"}),
]
ROUND_TRIP = [
    *SUBSTITUTABLE,
    "<a href='/u?n={{ contact.first_name }}'>{{ contact.email }}</a> {{ contact.attributes.points }}",
]


@pytest.mark.parametrize("html", ROUND_TRIP)
async def test_expanded_skeleton_equals_the_full_render_for_every_contact(html: str) -> None:
    content = _email(
        html, text="Hi {{ contact.first_name | default('friend') }}, {{ contact.points }} points"
    )
    personaliser = Personaliser()
    for contact in CONTACTS:
        ctx = _ctx(contact)
        got = await personaliser.render(content, "email", ctx, "bulk")
        assert expand(got) == render_channel(content, "email", ctx)
    skeleton = render_skeleton(content, "email", SKELETON_CTX)
    assert skeleton is not None
    assert (await personaliser.render(content, "email", _ctx(CONTACTS[0]), "bulk"))[
        "text"
    ] == skeleton.rendered["text"]


async def test_html_values_are_escaped_and_text_values_are_not() -> None:
    content = _email("<p>{{ contact.first_name }}</p>", text="{{ contact.first_name }}")
    got = await Personaliser().render(content, "email", _ctx(CONTACTS[1]), "bulk")
    values = sorted(got[CONTENT_FIELD].values())
    assert values == ["&lt;Bob &amp; &#34;Co&#34;&gt;", '<Bob & "Co">', '<Bob & "Co">']
    assert expand(got)["html"] == "<p>&lt;Bob &amp; &#34;Co&#34;&gt;</p>"


async def test_what_only_the_full_render_can_say_is_rendered_in_full() -> None:
    personaliser = Personaliser()
    content = _email("{{ contact.attributes.tags }} {{ contact.first_name }}")
    listed = ContactIn(email="a@example.com", attributes={"tags": ["a"], "first_name": "Ann"})
    full = await personaliser.render(
        content, "email", _ctx(listed), "bulk"
    )  # a list prints as Jinja prints it
    assert CONTENT_FIELD not in full and full["html"] == "[&#39;a&#39;] Ann"
    marked = ContactIn(email="a@example.com", attributes={"first_name": f"x{MARK}html0{MARK}"})
    got = await personaliser.render(_email("{{ contact.first_name }}"), "email", _ctx(marked), "bulk")
    assert CONTENT_FIELD not in got and got["html"] == f"x{MARK}html0{MARK}"
    # the transactional lane never uses skeletons
    got = await personaliser.render(
        _email("{{ contact.first_name }}"), "email", _ctx(CONTACTS[0]), "transactional"
    )
    assert CONTENT_FIELD not in got and got["html"] == "Ann"


def test_expand_is_one_pass_and_leaves_plain_content_alone() -> None:
    plain = {"subject": "s", "text": "t"}
    assert expand(plain) is plain
    t0, t1 = f"{MARK}text0{MARK}", f"{MARK}text1{MARK}"
    content = {"subject": f"Hi {t0}", "text": f"{t0}/{t1}", CONTENT_FIELD: {t0: t1, t1: "x"}}
    assert expand(content) == {"subject": f"Hi {t1}", "text": f"{t1}/x"}
    assert expand_text(None, {t0: "a"}) is None
