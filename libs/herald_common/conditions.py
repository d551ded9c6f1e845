"""Trigger expressions in CEL (the Common Expression Language, via the ``cel`` package): a rule's
``condition`` (true sends) and its ``cancellation_key`` (a string), and a campaign's ``segment``.

Expressions see two variables: ``event`` (``id``, ``type``, ``data``, ``occurred_at`` as an RFC 3339
string) and ``contact`` (``id``, ``attributes``, ``locale``, ``timezone``, ``has_email``, ``has_phone``,
``has_push``). They are compiled once per trigger version (the compiled programs are cached by tenant,
event type and version) and checked when the trigger or campaign is saved *and* whenever a stored one
is compiled again to be run (a stored expression that the current bounds refuse is never run: the rule
reads ``condition_error``, the campaign cannot start). A syntax error is reported with its line and
column.

The promise — evaluation is budgeted, deterministically:

- **Static bounds, on the syntax tree.** The text is parsed again by :mod:`herald_common.cel_syntax`
  (comments and string literals of every quote form are tokens, so neither can hide or fake a macro)
  and bounded by :mod:`herald_common.cel_cost`: at most :data:`MAX_EXPRESSION_CHARS` characters, at
  most one comprehension macro and none nested in another, only ``event``, ``contact`` and the macro's
  variable as names, an allow-list of functions (``matches`` with a literal pattern), and a cost
  polynomial ``cost(S)`` in the size ``S`` of what the expression reads.
- **A budget at every evaluation.** The input is cut down to the fields the expression names, measured
  (:func:`~herald_common.cel_cost.measure`), and the evaluation runs only when ``cost(S)`` is within
  :data:`EXPRESSION_BUDGET` steps (≈ 50 ms at a pessimistic rate, far less in practice) and within
  what is left of the caller's :class:`Budget` (an event's rules share one, :data:`EVENT_BUDGET`).
  Otherwise it is :class:`BudgetExceeded` before any work is done: nothing is truncated, and the
  outcome does not depend on timing or load. So a quadratic condition is fine over a small event and
  refused over a large one, and one tenant's expression cannot hold a shared event loop for long.

A runtime error (a missing field, a type mismatch) is an :class:`ExpressionError`, never a crash.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import cel

from herald_common.cel_cost import (
    EXPRESSION_BUDGET,
    MAX_COMPREHENSIONS,
    VARIABLES,
    Analysis,
    BoundsProblem,
    analyse,
    measure,
)
from herald_common.cel_syntax import SyntaxProblem, parse

__all__ = [
    "EVENT_BUDGET",
    "EXPRESSION_BUDGET",
    "MAX_COMPREHENSIONS",
    "MAX_EXPRESSION_CHARS",
    "VARIABLES",
    "Budget",
    "BudgetExceeded",
    "BudgetSpent",
    "Expression",
    "ExpressionCache",
    "ExpressionError",
    "compile_expression",
    "contact_variables",
]

MAX_EXPRESSION_CHARS: Final = 1000
EVENT_BUDGET: Final = 4 * EXPRESSION_BUDGET  # all the expressions of one event's rules together
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
_NAMED_FUNCTION = re.compile(r"^\.?[A-Za-z_][A-Za-z0-9_]*$")


class ExpressionError(ValueError):
    """An expression that does not compile (``line``/``column`` set) or failed to evaluate."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.message, self.line, self.column = message, line, column


class BudgetExceeded(ExpressionError):
    """The evaluation would cost more than its budget for this input: refused before it runs."""


class BudgetSpent(BudgetExceeded):
    """The evaluation fits its own budget but not what is left of a shared :class:`Budget`."""


class Budget:
    """Steps left for a group of evaluations (an event's rules, a round of a campaign's segment); each
    evaluation spends its bound before it runs."""

    def __init__(self, steps: int, shared_by: str = "this event's rules") -> None:
        self.total = self.left = steps
        self.shared_by = shared_by

    def spend(self, steps: int) -> None:
        if steps > self.left:
            raise BudgetSpent(
                f"over the evaluation budget: about {steps:,} steps for this input, {self.left:,} "
                f"left of the {self.total:,} shared by {self.shared_by}"
            )
        self.left -= steps


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    program: cel.Program
    bounds: Analysis

    def steps(self, variables: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """What the expression sees of ``variables``, and the bound of evaluating it over that."""
        view = self.bounds.view(variables)
        size = measure(view, self.bounds.max_input)
        if size > self.bounds.max_input:
            raise BudgetExceeded(
                f"over its evaluation budget: the input it reads has size over {self.bounds.max_input:,}, "
                f"the most its cost allows within {EXPRESSION_BUDGET:,} steps"
            )
        return view, self.bounds.steps(size)

    def evaluate(self, variables: dict[str, Any], budget: Budget | None = None) -> Any:
        view, steps = self.steps(variables)
        if budget is not None:
            budget.spend(steps)
        try:
            return self.program.execute(view)
        except Exception as exc:  # the CEL runtime raises KeyError, TypeError, ValueError, RuntimeError…
            raise ExpressionError(f"{type(exc).__name__}: {exc}".strip()) from None

    def test(self, variables: dict[str, Any], budget: Budget | None = None) -> bool:
        """A condition's verdict; anything but a boolean result is an error."""
        result = self.evaluate(variables, budget)
        if not isinstance(result, bool):
            raise ExpressionError(f"the condition gave {type(result).__name__}, not a boolean")
        return result

    def text(self, variables: dict[str, Any], budget: Budget | None = None) -> str:
        result = self.evaluate(variables, budget)
        if not isinstance(result, str | int) or isinstance(result, bool):
            raise ExpressionError(f"the expression gave {type(result).__name__}, not a string")
        return str(result)


def compile_expression(source: str) -> Expression:
    """Compile ``source``; :class:`ExpressionError` with the position for a syntax error, or for an
    expression over its bounds or naming a variable other than ``event`` and ``contact``."""
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    if not source.strip():
        raise ExpressionError("is empty")
    try:
        program = cel.compile(source)
    except Exception as exc:
        text = str(exc)
        match = _POSITION.search(text)
        if match:
            raise ExpressionError(match.group(3), int(match.group(1)), int(match.group(2))) from None
        raise ExpressionError(text.splitlines()[0] if text else type(exc).__name__) from None
    try:
        bounds = analyse(parse(source), source)
    except (SyntaxProblem, BoundsProblem) as exc:
        raise ExpressionError(exc.message, exc.line, exc.column) from None
    # Both parsers must have read the same expression: the names each one found agree.
    named = {f for f in program.functions() if _NAMED_FUNCTION.match(f)}
    if set(program.variables()) != bounds.idents or not named <= bounds.functions:
        raise ExpressionError("could not be checked: simplify the expression")
    return Expression(source, program, bounds)


class ExpressionCache:
    """Compiled expressions by (tenant, event type, trigger version, which): compiled once per version."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], Expression] = OrderedDict()

    def get(self, key: tuple[str, ...], source: str) -> Expression:
        found = self._items.get(key)
        if found is not None and found.source == source:
            self._items.move_to_end(key)
            return found
        compiled = compile_expression(source)
        self._items[key] = compiled
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return compiled


def contact_variables(contact: Any) -> dict[str, Any]:
    """The ``contact`` variable of a :class:`~herald_common.schemas.Contact`."""
    return {
        "id": contact.id,
        "attributes": contact.attributes,
        "locale": contact.locale,
        "timezone": contact.timezone,
        "has_email": contact.email is not None,
        "has_phone": contact.phone is not None,
        "has_push": bool(contact.push_tokens),
    }
