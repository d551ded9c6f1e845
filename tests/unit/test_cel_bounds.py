"""CEL bounds on the syntax tree and the evaluation budget: the lexer (comments and every quote form),
hidden and nested macros, the cost polynomial, the budget at evaluation (the issue's reproduction),
what the expression sees of its input, and a differential check of the lexer against ``cel``'s own."""

from __future__ import annotations

import random
import time

import cel
import pytest

from herald_common import cel_syntax
from herald_common.cel_cost import EXPRESSION_BUDGET, measure, pattern_weight
from herald_common.cel_syntax import Comprehension, SyntaxProblem, children, parse, tokens
from herald_common.conditions import (
    EVENT_BUDGET,
    Budget,
    BudgetExceeded,
    ExpressionError,
    compile_expression,
)

REPRO = "event.data.l.exists(a, (a+1000000) in event.data.l)"


def _event(**data: object) -> dict[str, object]:
    return {"event": {"id": "e_1", "type": "t", "data": data, "occurred_at": "2030-01-01T00:00:00Z"}}


def _macros(source: str) -> int:
    stack, found = [parse(source)], 0
    while stack:
        node = stack.pop()
        found += isinstance(node, Comprehension)
        stack.extend(children(node))
    return found


# -- the lexer


@pytest.mark.parametrize(
    "literal",
    [
        '"a // b"',
        "'a \" b'",
        '"""a "b" ""c"""',
        "'''a\n'b' exists(x, x)'''",
        r'"\" // not a comment \""',
        r'r"\"',
        r"R'\'",
        'b"x.map(a, a)"',
        r'br"\d"',
        "BR'''x\ny'''",
        r'"""\""""',
        r'"\x41\101\u00e9\U0001F600\?\`"',
    ],
)
def test_every_quote_form_is_one_token_whatever_it_contains(literal: str) -> None:
    kinds = [t.kind for t in tokens(literal)]
    assert kinds in (["string", "eof"], ["bytes", "eof"]), kinds
    cel.compile(literal)  # and the runtime agrees it is one literal


def test_comments_are_dropped_and_end_only_at_a_line_feed() -> None:
    assert [t.text for t in tokens("a // b.exists(c, c)\n+ 1")] == ["a", "+", "1", ""]
    assert [t.text for t in tokens("a // b\r+ 1")] == ["a", ""]  # a carriage return does not end it
    assert [t.text for t in tokens('"//" + a')] == ['"//"', "+", "a", ""]


@pytest.mark.parametrize(
    ("source", "where"),
    [('"abc', (1, 1)), ('"a\nb"', (1, 3)), (r'"\q"', (1, 2)), (r'"\400"', (1, 2)), ("a ~ b", (1, 3))],
)
def test_lexer_errors_have_a_position(source: str, where: tuple[int, int]) -> None:
    with pytest.raises(SyntaxProblem) as info:
        tokens(source)
    assert (info.value.line, info.value.column) == where


# -- static bounds


def test_a_comment_between_a_macro_and_its_parenthesis_still_counts() -> None:
    hidden = "event.data.l.exists(a, event.data.l.exists // c\n (b, b == a))"
    with pytest.raises(ExpressionError, match="nest 2 deep") as info:
        compile_expression(hidden)
    assert (info.value.line, info.value.column) == (1, 37)


def test_eight_deep_hidden_nesting_is_refused_with_its_depth() -> None:
    source = "h > 0"
    for name in reversed("bcdefgh"):
        source = f"contact.attributes.l.exists //\n({name}, {source})"
    source = f"contact.attributes.l.exists(a, {source})"  # one macro the text shows, seven it hides
    with pytest.raises(ExpressionError, match="nest 8 deep"):
        compile_expression(source)


def test_macro_names_inside_strings_and_comments_do_not_count() -> None:
    source = (
        '"x.exists(a, x.map(b, b))" + r".filter(" + \'\'\'.all(\n\'\'\' + b".map(" == "" '
        "// event.data.l.exists(z, z)\n|| event.data.l.exists(a, a > 1)"
    )
    assert _macros(source) == 1
    expr = compile_expression(source)
    assert expr.bounds.comprehensions == 1 and expr.bounds.depth == 1
    assert expr.test(_event(l=[1, 2])) is True


def test_names_functions_and_patterns_are_checked() -> None:
    refused = {
        "type(1) == int": "unknown variable 'int'",
        "event.data.s.lowerAscii() == 'a'": "unknown function 'lowerAscii'",
        "contains(event.data.s, 'a')": "called as x.contains",
        "event.data.s.matches(event.data.p)": "string literal pattern",
        "event.data.l.exists(event, event > 1)": "cannot name",
        "event.data.l.exists(__result__, true)": "cannot name",
        "event.data.l.exists(a, a > 1) && event.data.l.all(b, b > 0)": "at most 1",
        'event.data.s.matches("(\\\\w{50}){50}")': "for any input",
        "Foo{a: 1}": "message construction",
        "(" * 40 + "1" + ")" * 40: "levels deep",
    }
    for source, message in refused.items():
        with pytest.raises(ExpressionError, match=message):
            compile_expression(source)
    assert compile_expression('event.data.s.matches("^[A-Z]{3}-\\\\d+$")').test(_event(s="ABC-12"))


def test_the_cost_follows_the_shape_of_the_expression() -> None:
    def degree(source: str) -> int:
        return compile_expression(source).bounds.cost.degree

    assert degree("event.data.points >= 500") == 1  # handing over its input is linear
    assert degree("event.data.l.exists(a, a > 5)") == 1
    assert degree(REPRO) == 2  # one comprehension, quadratic in the event
    assert degree("event.data.l.map(a, a).size() > 0") == 2  # the runtime copies its accumulator
    assert degree("event.data.l.map(a, event.data.l).size() > 0") == 3
    bounds = compile_expression(REPRO).bounds
    assert bounds.steps(bounds.max_input) <= EXPRESSION_BUDGET < bounds.steps(bounds.max_input + 1)
    assert 100 < bounds.max_input < 2_000  # a few hundred integers, where a linear scan takes ~20,000
    assert compile_expression("event.data.l.exists(a, a > 5)").bounds.max_input > 20 * bounds.max_input


def test_pattern_weight_grows_with_counted_repetition_and_unicode_classes() -> None:
    assert pattern_weight("abc") < pattern_weight("[a-z]+") < pattern_weight("\\w")
    assert pattern_weight("(a{100}){100}") > 100 * pattern_weight("a{100}") / 2
    assert pattern_weight("(?i)abc") > pattern_weight("abc")


# -- the budget at evaluation


def test_the_reproduction_is_refused_over_a_big_event_before_it_runs() -> None:
    expr = compile_expression(REPRO)
    big = _event(l=list(range(6000)))  # the 35 KB event: ~2 s of CPU unbudgeted
    started = time.process_time()
    with pytest.raises(BudgetExceeded, match="budget"):
        expr.test(big)
    assert time.process_time() - started < 0.5  # refused on its size, not after running
    assert expr.test(_event(l=list(range(200)))) is False  # a small event is evaluated as before


def test_a_linear_condition_over_the_same_event_is_fine() -> None:
    assert compile_expression("event.data.l.exists(a, a == 5999)").test(_event(l=list(range(6000))))


def test_input_is_cut_to_the_fields_the_expression_reads() -> None:
    expr = compile_expression('event.data.points >= 500 && has(contact.attributes.tier) && event["id"] != ""')
    variables = {
        **_event(points=900, blob=["x" * 100] * 10_000),
        "contact": {"attributes": {"tier": "gold", "notes": "y" * 10**6}, "id": "m"},
    }
    view = expr.bounds.view(variables)
    assert view == {
        "event": {"data": {"points": 900}, "id": "e_1"},
        "contact": {"attributes": {"tier": "gold"}},
    }
    assert expr.test(variables) is True
    with pytest.raises(ExpressionError, match="points"):  # an absent field fails as on the whole input
        expr.test({**_event(), "contact": {"attributes": {"tier": "gold"}}})


def test_an_events_rules_share_one_budget() -> None:
    expr = compile_expression("event.data.l.exists(a, a < 0)")
    variables = _event(l=list(range(5000)))
    _, steps = expr.steps(variables)
    budget = Budget(EVENT_BUDGET)
    spent = 0
    with pytest.raises(BudgetExceeded, match="shared by this event's rules"):
        for _ in range(EVENT_BUDGET // steps + 1):
            expr.test(variables, budget)
            spent += steps
    assert spent == steps * (EVENT_BUDGET // steps) and budget.left < steps


def test_measure_stops_soon_after_its_limit() -> None:
    assert measure([1, 2, 3], 100) == 13
    assert measure({"a": "x" * 80}, 1000) == 10 + 16 + 10 + 10 + 10
    huge = [list(range(1000))] * 1000
    started = time.process_time()
    assert measure(huge, 5_000) > 5_000
    assert time.process_time() - started < 0.05


# -- the lexer against cel's own, on expressions with junk spliced in

JUNK = [
    "// exists(q1, q1)\n",
    "// \r exists(q2, q2)\n",
    '"exists(q3, q3) // "',
    r'"\" exists(q4, q4) \""',
    r'r"\" + event.data.l.exists(q5, q5) + "\"',
    "'''\nexists(q6, q6)\n'''",
    '"""a""" + """b"c"""',
    r"br'\' + contact.attributes.l.exists(q7, q7 > 0) + '\''",
    "b'''x''' + '''y'''",
    r'"\x41\u00e9" + R"\d"',
    "/" + "/\n",
    '"',
    "'''",
    '"""',
    "\n",
    "r",
]
BASES = [
    "event.data.l.exists(v1, v1 > 1) || contact.has_email",
    'contact.attributes.tier == "gold" && event.data.points >= 500',
    "event.data.l.map(v2, v2 + 1).size() > 0",
    "size(event.data.s) + 1 > 2 ? true : false",
]


def test_the_lexer_agrees_with_cel_on_what_is_code() -> None:
    rng = random.Random(23)
    compiled = 0
    for _ in range(3000):
        source = rng.choice(BASES)
        for _ in range(rng.randint(1, 3)):
            cuts = [i for i, ch in enumerate(source) if ch in " (),+.|&"] or [0]
            at = rng.choice(cuts)
            source = source[:at] + rng.choice([" ", "+ ", " "]) + rng.choice(JUNK) + source[at:]
        try:
            program = cel.compile(source)
        except Exception:
            continue
        try:
            tree = cel_syntax.parse(source)
        except SyntaxProblem:
            continue  # stricter here is safe: the expression is refused
        compiled += 1
        names: set[str] = set()
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, cel_syntax.Ident):
                names.add(node.name)
            stack.extend(children(node))
        assert names == set(program.variables()), source
    assert compiled > 100
