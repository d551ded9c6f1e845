"""Template budgets: compile size, render steps/CPU, sizes refused before allocating, no Jinja globals,
a byte-bounded compiled cache, and the one template context."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from jinja2 import Template

from herald_common.schemas import ChannelContent, ContactIn, Tenant
from herald_common.template_budget import MAX_TOKENS
from herald_common.templating import (
    BoundedCache,
    TemplateBudgetError,
    TemplateRenderError,
    check_syntax,
    check_template,
    render_channel,
    render_channel_async,
    template_context,
)

CTX: dict[str, Any] = {
    "contact": {"first_name": "Ada"},
    "data": {"items": list(range(3000)), "s": "x" * 100, "rows": [{"n": "a"}, {"n": "b"}]},
    "tenant": {"id": "t1", "name": "Cinema"},
}


def _sms(text: str, ctx: dict[str, Any] = CTX) -> str:
    content = ChannelContent.model_validate({"sms": {"text": text}})
    return str(render_channel(content, "sms", ctx)["text"])


def _html(html: str) -> str:
    content = ChannelContent.model_validate({"email": {"subject": "s", "html": html}})
    return str(render_channel(content, "email", CTX)["html"])


def test_ordinary_templates_still_render() -> None:
    assert _sms("Hi {{ contact.first_name }} from {{ tenant.name }}") == "Hi Ada from Cinema"
    assert _sms("{% for r in data.rows %}{{ loop.index }}{{ r.n|upper }}{% endfor %}") == "1A2B"
    assert _sms("{{ data.rows|map(attribute='n')|join(', ') }}") == "a, b"
    assert _sms("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m('a') ~ m(2) }}") == "<a><2>"
    assert (
        _sms("{% set n = data['items']|length %}{{ '%05d'|format(n) }} {{ '{:>4}'.format(7) }}")
        == "03000    7"
    )
    assert _html("<b>{{ '<i>' ~ contact.first_name }}</b>") == "<b>&lt;i&gt;Ada</b>"
    assert (
        _sms("{% macro b(t) %}[{{ t }}{{ caller() }}]{% endmacro %}{% call b('x') %}in{% endcall %}")
        == "[xin]"
    )
    assert _sms("{% for k, v in data.rows[0].items() %}{{ k }}={{ v }}{% endfor %}") == "n=a"
    assert _sms("{% filter upper %}{{ contact.missing|default('friend') }}{% endfilter %}") == "FRIEND"
    push = ChannelContent.model_validate(
        {"push": {"body": "b {{ data.s|length }}", "data": {"k": "{{ tenant.id }}"}}}
    )
    assert render_channel(push, "push", CTX) == {"body": "b 100", "data": {"k": "t1"}}


def test_nested_loops_fail_fast_with_a_budget_error() -> None:
    # 3000 x 3000 iterations with no output: 0.5 s and more unbudgeted; now stopped at the step budget
    started = time.process_time()  # CPU time of this process: the shared machine's load does not count
    with pytest.raises(TemplateBudgetError, match="budget"):
        _sms("{% for i in data['items'] %}{% for j in data['items'] %}{% endfor %}{% endfor %}")
    with pytest.raises(TemplateBudgetError):  # exponential macro recursion: calls are steps
        _sms("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}")
    for heavy in (
        "s|urlize",
        "s|wordwrap(1)",
        "s|title",
        "s|list|sort|join",
    ):  # filters cost their input size
        with pytest.raises(TemplateBudgetError):
            _sms(
                "{% set s = 'hi http://x.io ' * 4000 %}{% for i in data['items'] %}{{ "
                + heavy
                + " }}{% endfor %}"
            )
    assert time.process_time() - started < 3


def test_budget_errors_are_render_errors_the_router_turns_into_failed_channels() -> None:
    assert issubclass(TemplateBudgetError, TemplateRenderError)


_SIZE_BOMBS = [
    "{{ 'a' * 10**8 }}",
    "{{ ['a'] * 10**8 }}",
    "{{ 'a'.ljust(10**8) }}",
    "{{ 'a'.zfill(10**8) }}",
    "{{ 'a'|center(10**8) }}",
    "{{ 'a'|indent(10**8, true) }}",
    "{{ data.s|wordwrap(1, wrapstring=data.s * 9999) }}",
    "{{ '%0100000000d' % 1 }}",
    "{{ '%0100000000d'|format(1) }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ data.s|replace('x', data.s * 100)|replace('x', data.s * 100) }}",
    "{{ data.s.replace('x', data.s * 100).replace('x', data.s * 100) }}",
    "{{ (data.s * 9000).join(data['items']|map('string')) }}",
    "{{ data['items']|join(data.s * 9000) }}",
    "{% set a = data.s * 9000 %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}",
    "{% set a = data.s * 9000 %}{% set a = a + a %}{% set a = a + a %}{{ a }}",
    "{% set a = [data.s * 9000] %}{% set a = [a, a, a, a] %}{% set a = [a, a, a, a] %}{{ a }}",
    "{% macro m() %}{% for i in data['items'] %}{{ data.s * 9000 }}{% endfor %}{% endmacro %}"
    "{{ m()|length }}",
    "{% set b %}{% for i in data['items'] %}{{ data.s * 9000 }}{% endfor %}{% endset %}{{ b|length }}",
    "{{ 9**99999999 }}",
    "{% set n = 7**3000 %}{{ n * n * n * n }}",
]


def test_size_expanding_operations_are_refused_before_allocating() -> None:
    """In a fresh process (ru_maxrss is a high-water mark): every bomb is a budget error and the
    process grows by far less than the 100 MB and more any of them would allocate unbudgeted."""
    script = f"""
import json, resource, sys
from herald_common.schemas import ChannelContent
from herald_common.templating import TemplateBudgetError, render_channel
ctx = {json.dumps(CTX)}
render_channel(ChannelContent.model_validate({{"sms": {{"text": "warm {{{{ 1 }}}}"}}}}), "sms", ctx)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
errors = []
for src in {_SIZE_BOMBS!r}:
    try:
        render_channel(ChannelContent.model_validate({{"sms": {{"text": src}}}}), "sms", ctx)
        errors.append(src + ": rendered")
    except TemplateBudgetError:
        pass
    except Exception as exc:
        errors.append(src + ": " + repr(exc))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"errors": errors, "grown_kb": grown}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["errors"] == []
    assert result["grown_kb"] < 40_000


def test_output_over_the_field_limit_is_refused_while_streaming() -> None:
    # 3000 x 100 characters: the SMS limit (1600) is hit after 17 iterations, not after rendering it all
    with pytest.raises(TemplateBudgetError, match="longer than 1600"):
        _sms("{% for i in data['items'] %}{{ data.s }}{% endfor %}")


def test_no_jinja_globals_and_no_python_reprs() -> None:
    assert _sms("[{{ lipsum }}{{ cycler }}{{ joiner }}{{ namespace }}{{ range }}{{ dict }}]") == "[]"
    for src in ("{{ range(3)|list }}", "{{ lipsum() }}", "{{ dict(a=1) }}"):
        with pytest.raises(TemplateRenderError, match="undefined"):
            _sms(src)
    for src in (
        "{{ ''.upper }}",
        "{{ self }}",
        "{{ data['items']|map('string') }}",
        "{{ [''.upper] }}",
        "{{ 'a' ~ ''.upper }}",
    ):
        with pytest.raises(TemplateRenderError) as info:
            _sms(src)
        assert "0x" not in str(info.value) and "<" not in str(info.value)
    with pytest.raises(TemplateRenderError, match="recursive"):
        _sms("{% for x in data.rows recursive %}{{ loop(x) }}{% endfor %}")


def test_compile_budget_refuses_oversized_sources_quickly() -> None:
    dense = ChannelContent.model_validate({"email": {"subject": "s", "html": "{{ a }}" * 20_000}})
    started = time.monotonic()
    ((field, message),) = check_syntax(dense)
    assert field == "email.html" and f"more than {MAX_TOKENS} tokens" in message
    assert time.monotonic() - started < 3  # parsing and compiling it took 7 s and 180 MB
    big_value = ChannelContent.model_validate({"push": {"body": "b", "data": {"k": "x" * 5000}}})
    assert [f for f, _ in check_syntax(big_value)] == ["push.data.k"]
    plain = ChannelContent.model_validate({"email": {"subject": "s", "html": "<p>static</p>\n" * 30_000}})
    assert check_syntax(plain) == []  # large plain HTML is cheap to compile and still fine


def test_compiled_cache_is_bounded_by_bytes() -> None:
    cache = BoundedCache(budget_bytes=1_000_000, entry_bytes=200_000)
    dummy = Template("x")
    for i in range(500):
        cache.put((f"{{{{ a }}}} {i}" + "y" * 1000, False), dummy)
    assert cache.used <= 1_000_000 and len(cache._entries) < 500
    cache.put(("z" * 150_000, False), dummy)  # costs more than an entry may: not kept
    assert ("z" * 150_000, False) not in cache
    assert cache.get(("{{ a }} 499" + "y" * 1000, False)) is dummy  # most recent survive


def test_one_context_for_sends_and_previews() -> None:
    tenant = Tenant(id="t1", name="Cinema", created_at=datetime.now(UTC))
    contact = ContactIn(email="a@example.com", attributes={"first_name": "Ada"})
    ctx = template_context(tenant_id="t1", tenant=tenant, data={"x": 1}, contact=contact)
    assert ctx["tenant"] == {"id": "t1", "name": "Cinema"}
    assert ctx["contact"]["first_name"] == "Ada" and ctx["contact"]["email"] == "a@example.com"
    assert template_context(tenant_id="t2", tenant=None, data={}, contact=None)["tenant"] == {"id": "t2"}


async def test_async_render_moves_heavy_templates_off_the_loop() -> None:
    light = ChannelContent.model_validate({"sms": {"text": "Hi {{ contact.first_name }}"}})
    heavy = ChannelContent.model_validate(
        {"sms": {"text": "{% for i in data['items'] %}{% for j in data['items'] %}{% endfor %}{% endfor %}"}}
    )
    render_channel(light, "sms", CTX)  # compiled: renders inline
    assert (await render_channel_async(light, "sms", CTX)) == {"text": "Hi Ada"}
    render_channel(ChannelContent.model_validate({"sms": {"text": "x"}}), "sms", CTX)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        with pytest.raises(TemplateBudgetError):
            await render_channel_async(heavy, "sms", CTX)
    finally:
        task.cancel()
    assert ticks > 0  # the loop kept running while the heavy template rendered in a thread


def test_check_template_refuses_what_is_over_budget_without_data() -> None:
    bomb = ChannelContent.model_validate({"sms": {"text": "{{ 'a' * 10**8 }}"}})
    ((field, message),) = check_template(bomb, prefix="locales.fr.")
    assert field == "locales.fr.sms.text" and "would exceed" in message
    needs_data = ChannelContent.model_validate({"sms": {"text": "{{ data.order.id }}"}})
    assert check_template(needs_data) == []  # fails only for want of data: left to the send
