"""Budgets for sandboxed templates: compile size, render steps and CPU time, value and output sizes.

A render runs under a :class:`Budget` made current for the thread (:func:`budgeted`). The environment
of :mod:`herald_common.template_sandbox` charges it through the hooks defined here:

- compile: at most :data:`MAX_TOKENS` lexer tokens and :data:`MAX_NODES` syntax nodes per source;
  recursive ``for`` loops are refused (their inner iterations could not be counted);
- steps: one per loop iteration, call, filter, intercepted operator and container element measured;
  the thread's CPU time is checked every few hundred steps;
- size: every value a template prints, concatenates (``~``, ``+``), repeats (``*``), formats (``%``,
  ``format``) or hands to a size-expanding filter or ``str`` method is measured *before* the result is
  allocated and refused above :data:`MAX_VALUE_CHARS`; everything a render produces (including macro,
  ``set`` block and ``filter`` block buffers) counts toward :data:`MAX_PRODUCED_CHARS`.

Templates see no Jinja globals (no ``range``, ``lipsum``, ``cycler``, ``joiner``, ``namespace``,
``dict``), and printing anything but strings, numbers, booleans, none, lists and mappings of them
(a function, class, module, generator, loop object, …) is an error rather than a Python repr.
"""

from __future__ import annotations

import functools
import re
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jinja2 import Undefined, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import markup_join, str_join
from jinja2.utils import _PassArg

MAX_TOKENS = 5_000  # lexer tokens per source: bounds parse and compile time (~0.3 s at the limit)
MAX_NODES = 5_000  # syntax nodes per source after parsing
MAX_STEPS = 200_000  # loop iterations, calls, filters, operators, measured elements per render
MAX_CPU_S = 0.1  # CPU seconds of the rendering thread per render
MAX_VALUE_CHARS = 1_000_000  # any one string/list a template builds or prints
MAX_PRODUCED_CHARS = 2_000_000  # all output a render produces, buffers included
MAX_INT_BITS = 4_096  # integers a template computes with * and **
_TIME_EVERY = 256  # steps between CPU-time checks
CHARS_PER_STEP = 256  # what a filter, call or operator costs on top of its step: its input's size
SLOW_STEPS_PER_CHAR = 4  # ... for filters written in Python that cost microseconds per character
SLOW_FILTERS = frozenset(
    {"wordwrap", "urlize", "title", "striptags", "urlencode", "wordcount", "xmlattr", "pprint"}
)

ITER_FILTER, OUT_FILTER, CONCAT_FILTER = "herald_iter__", "herald_out__", "herald_concat__"


class BudgetExceeded(Exception):
    """A template went over one of its budgets (compile or render)."""


class SliceExhausted(BudgetExceeded):
    """An inline render used up its small slice; the caller renders again off the event loop."""


class Budget:
    __slots__ = ("cpu_s", "deadline", "produced", "slice", "steps", "tick")

    def __init__(self, steps: int = MAX_STEPS, cpu_s: float = MAX_CPU_S, *, is_slice: bool = False) -> None:
        self.steps = steps
        self.tick = _TIME_EVERY
        self.cpu_s = cpu_s
        self.deadline = time.thread_time() + cpu_s
        self.produced = 0
        self.slice = is_slice

    def _over(self, what: str) -> BudgetExceeded:
        return SliceExhausted(what) if self.slice else BudgetExceeded(what)

    def step(self, n: int = 1) -> None:
        self.steps -= n
        if self.steps < 0:
            raise self._over(f"the template went over its budget of {MAX_STEPS} steps")
        self.tick -= n
        if self.tick <= 0:
            self.tick = _TIME_EVERY
            if time.thread_time() > self.deadline:
                raise self._over(f"the template went over its budget of {self.cpu_s * 1000:.0f} ms of CPU")

    def produce(self, n: int) -> None:
        self.produced += n
        if self.produced > MAX_PRODUCED_CHARS:
            raise self._over(f"the template produced more than {MAX_PRODUCED_CHARS} characters")


_local = threading.local()


def current() -> Budget:
    budget: Budget | None = getattr(_local, "budget", None)
    if budget is None:  # e.g. Jinja folding constants at compile time: leave it to the render
        raise BudgetExceeded("no render budget is active")
    return budget


@contextmanager
def budgeted(budget: Budget) -> Iterator[Budget]:
    previous = getattr(_local, "budget", None)
    _local.budget = budget
    try:
        yield budget
    finally:
        _local.budget = previous


# --- measuring ------------------------------------------------------------------------------------
def size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """Roughly ``len(str(value))``, walking containers (a step per element) and stopping past
    ``limit``. Values a template must not print raise SecurityError instead of showing a repr."""
    if isinstance(value, str):
        return len(value)
    if value is None or isinstance(value, (bool, float, Undefined)):
        return 24
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if not isinstance(value, (list, tuple, dict)):
        raise SecurityError(f"a template cannot print or combine a {type(value).__name__} value")
    budget = current()
    total = 0
    stack: list[Any] = [value]
    while stack and total <= limit:
        item = stack.pop()
        budget.step()
        if isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += size(item, limit)
    return total


def arg_size(value: Any) -> int:
    """The size of a call's or filter's argument; callables (a macro's ``caller``) and the like are
    passed through (printing them is refused where they would be printed)."""
    return size(value) if isinstance(value, (str, list, tuple, dict)) else 0


def refuse_over(estimate: int, what: str) -> None:
    if estimate > MAX_VALUE_CHARS:
        raise current()._over(f"{what} would exceed {MAX_VALUE_CHARS} characters")


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")


def percent_estimate(fmt: str, args: Any) -> int:
    extra = 0
    for match in _PERCENT.finditer(fmt):
        for part in match.groups():
            if part == "*":
                raise SecurityError("'*' widths are not allowed in templates")
            extra += int(part or 0)
    return len(fmt) + extra + size(args)


def _format_estimate(fmt: str, args: Any) -> int:
    extra = 0
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec:
            if "{" in spec:
                raise SecurityError("nested format fields are not allowed in templates")
            extra += sum(int(n) for n in _NUMBER.findall(spec))
    return len(fmt) + extra + size(args)


def drain(value: Any) -> Any:
    """Turn a generator (from map, select, …) into a list, a step per item."""
    if isinstance(value, (str, list, tuple, dict, Undefined)) or not hasattr(value, "__next__"):
        return value
    budget = current()
    out = []
    for item in value:
        budget.step()
        out.append(item)
    return out


# Upper bounds of a result's size, computed from a call's arguments before the call runs.
def _replace_estimate(s: Any, old: Any = "", new: Any = "", count: Any = None, *_: Any) -> int:
    text, old, new = str(s), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * len(new)


def _join_estimate(sep: Any, items: Any = (), *_: Any, **__: Any) -> int:
    items = items if isinstance(items, (list, tuple, dict, str)) else ()
    return size(items) + len(items) * size(sep)


def _wrap_estimate(
    s: Any, width: Any = 79, _b: Any = True, wrapstring: Any = None, *_: Any, **kw: Any
) -> int:
    text = str(s)
    wrap = kw.get("wrapstring", wrapstring) or "\n"
    lines = len(text) // max(_int(kw.get("width", width), 1), 1) + text.count("\n") + 1
    return len(text) + lines * size(wrap)


def _indent_estimate(s: Any, width: Any = 4, *_: Any, **kw: Any) -> int:
    width = kw.get("width", width)
    text = str(s)
    return len(text) + (text.count("\n") + 1) * (size(width) if isinstance(width, str) else _int(width))


FILTER_ESTIMATES: dict[str, Callable[..., int]] = {
    "center": lambda s, width=80, *_: size(s) + _int(width),
    "indent": _indent_estimate,
    "wordwrap": _wrap_estimate,
    "replace": _replace_estimate,
    "join": lambda value, d="", *_, **kw: _join_estimate(kw.get("d", d), value),
    "format": lambda value, *args, **kw: percent_estimate(str(value), [args, kw]),
    "batch": lambda value, n=1, fill_with=None, *_: (
        size(value) + (_int(n) * size(fill_with) if fill_with is not None else 0)
    ),
    "tojson": lambda value, *_, **__: 6 * size(value),
    "escape": lambda value: 6 * size(value),
    "e": lambda value: 6 * size(value),
    "forceescape": lambda value: 6 * size(value),
    "urlencode": lambda value: 9 * size(value),
    "xmlattr": lambda value, *_: 6 * size(value),
    "urlize": lambda value, *_, **__: 16 * size(value),
    "pprint": lambda value: 2 * size(value),
}

# str methods (called on a template's strings) that can make a result larger than their inputs.
STR_ESTIMATES: dict[str, Callable[..., int]] = {
    "ljust": lambda s, width=0, *_: len(s) + _int(width),
    "rjust": lambda s, width=0, *_: len(s) + _int(width),
    "center": lambda s, width=0, *_: len(s) + _int(width),
    "zfill": lambda s, width=0: len(s) + _int(width),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * _int(tabsize),
    "replace": _replace_estimate,
    "join": _join_estimate,
    "translate": lambda s, table={}: len(s) * (1 + size(table)),
    "format": lambda s, *args, **kw: _format_estimate(s, [args, kw]),
    "format_map": lambda s, mapping={}: _format_estimate(s, mapping),
    "encode": lambda s, *_, **__: 4 * len(s),
}


def result_checked(out: Any, what: str) -> Any:
    if isinstance(out, (str, list, tuple, dict)) and len(out) > MAX_VALUE_CHARS:
        raise current()._over(f"{what} would exceed {MAX_VALUE_CHARS} characters")
    return out


def budgeted_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if _PassArg.from_obj(func) is not None else 0
    estimate = FILTER_ESTIMATES.get(name)

    slow = name in SLOW_FILTERS

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        args = tuple(a if i < skip else drain(a) for i, a in enumerate(args))
        what = f"the result of the {name} filter"
        total = sum(arg_size(a) for a in args[skip:]) + sum(arg_size(v) for v in kwargs.values())
        refuse_over(total, what)
        if estimate is not None:
            refuse_over(estimate(*args[skip:], **kwargs), what)
        budget.step(1 + (total * SLOW_STEPS_PER_CHAR if slow else total // CHARS_PER_STEP))
        return result_checked(func(*args, **kwargs), what)

    return wrapper


def iterate(value: Any) -> Iterator[Any]:
    budget = current()

    def counted() -> Iterator[Any]:
        for item in value:
            budget.step()
            yield item

    return counted()


def out_chunk(value: Any) -> Any:
    """Every printed chunk (literal text too) passes here: refuse unprintables, count the output."""
    budget = current()
    budget.produce(size(value) if not isinstance(value, str) else len(value))
    return value


@pass_eval_context
def concat(eval_ctx: EvalContext, parts: list[Any]) -> str:
    budget = current()
    total = sum(size(p) for p in parts)
    refuse_over(total, "a '~' concatenation")
    budget.step(1 + total // CHARS_PER_STEP)
    return markup_join(parts) if eval_ctx.autoescape else str_join(parts)
