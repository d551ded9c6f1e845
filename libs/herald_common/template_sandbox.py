"""The sandboxed environment templates compile and render in, wired to :mod:`template_budget`.

Compiling counts tokens and nodes and rewrites the syntax tree so that loop iterables, printed chunks
and ``~`` concatenations pass through the budget; rendering intercepts ``+ * ** %``, calls (including
``str.format``) and every filter. The environments have no globals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from herald_common.template_budget import (
    CHARS_PER_STEP,
    CONCAT_FILTER,
    ITER_FILTER,
    MAX_INT_BITS,
    MAX_NODES,
    MAX_TOKENS,
    OUT_FILTER,
    STR_ESTIMATES,
    BudgetExceeded,
    arg_size,
    budgeted_filter,
    concat,
    current,
    drain,
    iterate,
    out_chunk,
    percent_estimate,
    refuse_over,
    result_checked,
    size,
)


class _Instrument(NodeTransformer):
    """Route loop iterables, printed chunks and '~' through the budget (see the module doc)."""

    repeats = 0  # inside a body that can run more than once per render

    def _repeated(self, node: nodes.Node) -> nodes.Node:
        self.repeats += 1
        self.generic_visit(node)
        self.repeats -= 1
        return node

    visit_Macro = visit_CallBlock = visit_Block = _repeated

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if node.recursive:
            raise TemplateSyntaxError("recursive loops are not allowed in templates", node.lineno)
        self._repeated(node)
        node.iter = nodes.Filter(node.iter, ITER_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        wrapped: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                if not self.repeats:  # printed once: bounded by the source
                    wrapped.append(child)
                    continue
                child = nodes.MarkSafeIfAutoescape(nodes.Const(child.data), lineno=child.lineno)
            wrapped.append(nodes.Filter(child, OUT_FILTER, [], [], None, None, lineno=child.lineno))
        node.nodes = wrapped
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes), CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


def _int_bits_ok(operator: str, left: Any, right: Any) -> bool:
    if not (isinstance(left, int) and isinstance(right, int)):
        return True
    if operator == "*":
        return left.bit_length() + right.bit_length() <= MAX_INT_BITS
    if operator == "**":
        return right < 0 or abs(left) <= 1 or left.bit_length() * right <= MAX_INT_BITS
    return True


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with no globals, budgeted operators, calls, filters, loops and output."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=Undefined)
        self.globals.clear()
        self.filters = {name: budgeted_filter(name, f) for name, f in self.filters.items()}
        self.filters.update({ITER_FILTER: iterate, OUT_FILTER: out_chunk, CONCAT_FILTER: concat})

    # compile -----------------------------------------------------------------------------------------
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        for count, _ in enumerate(self._tokenize(source, name, filename), 1):
            if count > MAX_TOKENS:
                raise BudgetExceeded(f"the template is too complex: more than {MAX_TOKENS} tokens")
        tree = super()._parse(source, name, filename)
        count = sum(1 for _ in tree.find_all(nodes.Node))
        if count > MAX_NODES:
            raise BudgetExceeded(f"the template is too complex: {count} nodes, more than {MAX_NODES}")
        result: nodes.Template = _Instrument().visit(tree)
        return result

    # render ------------------------------------------------------------------------------------------
    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        what = f"the result of '{operator}'"
        estimate = 0
        if operator == "+" and isinstance(left, (str, list, tuple)):
            estimate = size(left) + size(right)
        elif operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                estimate = size(seq) * max(times, 0)
        elif operator == "%" and isinstance(left, str):
            estimate = percent_estimate(left, right)
        refuse_over(estimate, what)
        if not _int_bits_ok(operator, left, right):
            raise budget._over(f"{what} would exceed {MAX_INT_BITS} bits")
        budget.step(1 + estimate // CHARS_PER_STEP)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        args = tuple(drain(a) for a in args)
        what = f"the result of {getattr(__obj, '__name__', 'a call')}()"
        owner = getattr(__obj, "__self__", None)
        total = sum(arg_size(a) for a in args) + sum(arg_size(v) for v in kwargs.values())
        if isinstance(owner, str):
            total += len(owner)
            estimate = STR_ESTIMATES.get(__obj.__name__)
            if estimate is not None:
                refuse_over(estimate(owner, *args, **kwargs), what)
        refuse_over(total, what)
        budget.step(1 + total // CHARS_PER_STEP)
        return result_checked(super().call(__context, __obj, *args, **kwargs), what)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        estimate = STR_ESTIMATES[value.__name__]

        def checked_format(*args: Any, **kwargs: Any) -> str:
            refuse_over(estimate(fmt, *args, **kwargs), f"the result of {value.__name__}()")
            return wrapped(*args, **kwargs)

        return checked_format
