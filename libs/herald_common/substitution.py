"""Per-recipient substitutions: one rendered *skeleton* of an email for many members, plus each member's
own ``{token: value}`` map, instead of one full render (and one provider request) per member.

**When a template is substitutable.** Analysed once per source on the compiled syntax tree: every use of
``contact`` is a plain output of an attribute/item chain with constant keys, directly in an output tag —
``{{ contact.first_name }}``, ``{{ contact.attributes["points"] }}`` — optionally through the ``default``
filter with constant arguments (``{{ contact.first_name | default("friend") }}``). Such an output may sit
inside ``if``, ``for`` and ``with`` bodies (their tests and iterables do not involve ``contact``), never
inside a macro, call, filter, set or block body or an ``autoescape`` block, never in a condition, loop,
filter argument or expression. ``contact`` is never assigned or used as a loop or macro variable. Anything
else is not substitutable and is rendered in full per recipient, as before.

**Tokens.** Each chain's output is replaced at compile time by the constant ``\\u2063<field><n>\\u2063``
(U+2063 INVISIBLE SEPARATOR around the field name and the chain's number in that field), so subject,
text and html have distinct tokens: html values are HTML-escaped as Jinja's autoescape would, the others
not. A skeleton whose rendered text holds U+2063 other than in its own tokens (in the template text or in
``data``) is not used; a member whose value holds U+2063 gets the full render. So a token never comes from
escaping, the template's own text or a value, and expansion is a single pass.

**Values** are resolved with the sandbox's own ``getattr``/``getitem`` on the same ``contact`` context a
full render sees, and printed as Jinja prints them (``str``, ``escape`` for html; undefined prints
nothing). A chain that errors, or ends on anything but a string, number, boolean or None, sends that
member to the full render, which reports the same error. :func:`expand` of a skeleton and its
substitutions equals the full render of the same template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Template, Undefined, nodes
from jinja2.environment import Environment
from markupsafe import escape

from herald_common.template_budget import OUT_FILTER

MARK = "\u2063"
_PROBE = "\u2064"  # the second rendering's mark (see :func:`compile_skeleton`)
TOKEN = re.compile(MARK + r"[a-z_]+[0-9]+" + MARK)
CONTENT_FIELD = "substitutions"  # the Delivery content key holding {token: value}
_SCALARS = (str, int, float, type(None))  # bool is an int
_ALLOWED_BODIES = (nodes.Template, nodes.If, nodes.For, nodes.With, nodes.Scope)
_DEFAULT = frozenset({"default", "d"})


def token(field: str, index: int, mark: str = MARK) -> str:
    return f"{mark}{field}{index}{mark}"


@dataclass(frozen=True, slots=True)
class Chain:
    """``contact`` then ``steps`` (item access?, key), then maybe ``default(value, boolean)``."""

    steps: tuple[tuple[bool, str | int], ...]
    default: tuple[Any, bool] | None = None


@dataclass(frozen=True, slots=True)
class FieldSkeleton:
    """A compiled field with its ``contact`` chains as tokens; ``template`` None: not substitutable.
    ``probe`` is the same with other tokens: see :func:`compile_skeleton`."""

    template: Template | None
    chains: tuple[Chain, ...] = ()
    probe: Template | None = None

    def render(self, render: Any, field: str) -> tuple[str, dict[str, int]] | None:
        """Render through ``render(template) -> text``: the text and its token counts, or None when
        the output holds a mark that is not one of this field's tokens (from the template's text, its
        data or its own arithmetic): rendering again with other tokens must differ exactly there."""
        assert self.template is not None and self.probe is not None
        text: str = render(self.template)
        counts = tokens_in(text)
        if counts is None or any(t not in self._own(field) for t in counts):
            return None
        probe: str = render(self.probe)
        swapped = text
        for t in counts:
            swapped = swapped.replace(t, t.replace(MARK, _PROBE))
        return (text, counts) if swapped == probe else None

    def _own(self, field: str) -> set[str]:
        return {token(field, i) for i in range(len(self.chains))}


NOT_SUBSTITUTABLE = FieldSkeleton(None)


@dataclass(frozen=True, slots=True)
class Part:
    """One rendered field of a skeleton: its tokens' chains and counts, its length and its limit."""

    name: str
    html: bool
    chains: tuple[Chain, ...]
    counts: dict[str, int]
    length: int
    limit: int


@dataclass(frozen=True, slots=True)
class Skeleton:
    """A channel rendered once with tokens for ``contact`` (``rendered``: field name -> text)."""

    rendered: dict[str, Any]
    parts: tuple[Part, ...]
    env: Environment

    def substitutions(self, contact: Any) -> dict[str, str] | None:
        """This member's ``{token: value}``; None when only the full render can say what they get (a
        lookup error, an unprintable value, U+2063 in a value, a field over its length limit)."""
        values: dict[Chain, Any] = {}
        out: dict[str, str] = {}
        for part in self.parts:
            length = part.length
            for i, chain in enumerate(part.chains):
                tok = token(part.name, i)
                if not (n := part.counts.get(tok)):
                    continue
                if chain not in values:
                    try:
                        values[chain] = resolve(self.env, chain, contact)
                    except Exception:
                        return None
                if (text := printed(values[chain], part.html)) is None:
                    return None
                out[tok] = text
                length += n * (len(text) - len(tok))
            if length > part.limit:
                return None
        return out


def _chain(expr: nodes.Expr) -> Chain | None:
    default = None
    if isinstance(expr, nodes.Filter) and expr.name in _DEFAULT:
        args = expr.args
        if (
            expr.node is None
            or expr.kwargs
            or expr.dyn_args is not None
            or expr.dyn_kwargs is not None
            or not 1 <= len(args) <= 2
            or not all(isinstance(a, nodes.Const) for a in args)
        ):
            return None
        value, boolean = args[0].value, (args[1].value if len(args) == 2 else False)  # type: ignore[attr-defined]
        if not isinstance(value, _SCALARS) or not isinstance(boolean, bool):
            return None
        default, expr = (value, boolean), expr.node
    steps: list[tuple[bool, str | int]] = []
    while True:
        if isinstance(expr, nodes.Getattr):
            steps.append((False, expr.attr))
        elif isinstance(expr, nodes.Getitem):
            key = expr.arg.value if isinstance(expr.arg, nodes.Const) else None
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                return None
            steps.append((True, key))
        elif isinstance(expr, nodes.Name) and expr.name == "contact" and expr.ctx == "load" and steps:
            return Chain(tuple(reversed(steps)), default)
        else:
            return None
        expr = expr.node


def _outputs(node: nodes.Node) -> list[nodes.Output]:
    """Output nodes reachable through bodies that print each of their outputs as it is."""
    found: list[nodes.Output] = []
    bodies: list[list[nodes.Node]] = []
    if isinstance(node, nodes.Output):
        return [node]
    if isinstance(node, (nodes.Template, nodes.With, nodes.Scope)):
        bodies = [node.body]
    elif isinstance(node, nodes.For):
        bodies = [node.body, node.else_]
    elif isinstance(node, nodes.If):
        bodies = [node.body, list(node.elif_), node.else_]
    for body in bodies:
        for child in body:
            found += _outputs(child)
    return found


def rewrite(tree: nodes.Template, field: str, mark: str = MARK) -> tuple[Chain, ...] | None:
    """Replace each ``contact`` chain printed in ``tree`` (as compiled: each printed expression wrapped
    in the budget's output filter) by its token; the chains in token order, or None (tree untouched in
    meaning but not to be used) when ``contact`` appears anywhere else."""
    if any(n.name == "contact" and n.ctx != "load" for n in tree.find_all(nodes.Name)):
        return None
    chains: dict[Chain, int] = {}
    for output in _outputs(tree):
        for child in output.nodes:
            if not isinstance(child, nodes.Filter) or child.name != OUT_FILTER or child.node is None:
                continue
            chain = _chain(child.node)
            if chain is None:
                continue
            index = chains.setdefault(chain, len(chains))
            child.node = nodes.Const(token(field, index, mark), lineno=child.lineno)
    if any(n.name == "contact" for n in tree.find_all(nodes.Name)):
        return None
    return tuple(chains)


def compile_skeleton(env: Environment, source: str, field: str) -> FieldSkeleton:
    """Parse (within the environment's compile budget), rewrite and compile, twice: with the tokens and
    with probe tokens (another mark), so a rendering can prove where its tokens came from. Any failure is
    :data:`NOT_SUBSTITUTABLE`, left to the full render to report."""
    try:
        compiled = []
        chains: tuple[Chain, ...] | None = ()
        for mark in (MARK, _PROBE):
            tree = env.parse(source)
            chains = rewrite(tree, field, mark)
            if chains is None:
                return NOT_SUBSTITUTABLE
            compiled.append(
                env.template_class.from_code(env, env.compile(tree), env.make_globals(None), None)
            )
    except Exception:
        return NOT_SUBSTITUTABLE
    return FieldSkeleton(compiled[0], chains or (), compiled[1])


def resolve(env: Environment, chain: Chain, contact: Any) -> Any:
    """The chain's value as the full render sees it (sandboxed lookups; Undefined when missing)."""
    value = contact
    for item, key in chain.steps:
        value = env.getitem(value, key) if item else env.getattr(value, key)  # type: ignore[arg-type]
    if chain.default is not None:
        fallback, boolean = chain.default
        if isinstance(value, Undefined) or (boolean and not value):
            value = fallback
    return value


def printed(value: Any, html: bool) -> str | None:
    """``value`` as an output tag prints it; None when only the full render can say (containers,
    objects, errors) or when the text could be mistaken for a token."""
    if isinstance(value, Undefined):
        return ""
    if not isinstance(value, _SCALARS):
        return None
    text = str(escape(value)) if html else str(value)
    return None if MARK in text else text


def tokens_in(text: str) -> dict[str, int] | None:
    """How often each token occurs in a rendered skeleton; None when U+2063 occurs outside tokens."""
    counts: dict[str, int] = {}
    for match in TOKEN.finditer(text):
        counts[match.group()] = counts.get(match.group(), 0) + 1
    if text.count(MARK) != 2 * sum(counts.values()):
        return None
    return counts


def expand_text(text: Any, substitutions: Mapping[str, str] | None) -> Any:
    """One field with its tokens replaced (non-strings and token-free text as they are)."""
    if not substitutions or not isinstance(text, str) or MARK not in text:
        return text
    return TOKEN.sub(lambda m: substitutions.get(m.group(), m.group()), text)


def expand(content: dict[str, Any]) -> dict[str, Any]:
    """The final message of a delivery's content: every field expanded, ``substitutions`` gone. Content
    without substitutions is returned as it is (the transactional path pays one lookup)."""
    subs = content.get(CONTENT_FIELD)
    if subs is None:
        return content
    return {k: expand_text(v, subs) for k, v in content.items() if k != CONTENT_FIELD}


__all__ = [
    "CONTENT_FIELD",
    "MARK",
    "NOT_SUBSTITUTABLE",
    "Chain",
    "FieldSkeleton",
    "Part",
    "Skeleton",
    "compile_skeleton",
    "expand",
    "expand_text",
    "printed",
    "resolve",
    "rewrite",
    "tokens_in",
]
