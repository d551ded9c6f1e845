"""Trigger expressions in CEL (the Common Expression Language, via the ``cel`` package): a rule's
``condition`` (true sends) and its ``cancellation_key`` (a string).

Expressions see two variables: ``event`` (``id``, ``type``, ``data``, ``occurred_at`` as an RFC 3339
string) and ``contact`` (``id``, ``attributes``, ``locale``, ``timezone``, ``has_email``, ``has_phone``,
``has_push``). They are compiled once per trigger version (the compiled programs are cached by tenant,
event type and version) and checked when the trigger is saved: a syntax error is reported with its
line and column.

Evaluation is bounded: CEL has no loops or recursion, an expression is at most
:data:`MAX_EXPRESSION_CHARS` long with at most :data:`MAX_COMPREHENSIONS` comprehension macros (``map``,
``filter``, ``all``, ``exists``, ``exists_one``), and its inputs are bounded by the request size. A
runtime error (a missing field, a type mismatch) is an :class:`ExpressionError`, never a crash.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cel

MAX_EXPRESSION_CHARS = 1000
MAX_COMPREHENSIONS = 1  # one comprehension: evaluation stays linear in the size of its input
VARIABLES = frozenset({"event", "contact"})
# Macros expand at compile time (the program names no function for them): count them in the source, a
# string that merely contains one counting too (which can only make the bound stricter).
_COMPREHENSION = re.compile(r"\.\s*(?:map|filter|all|exists|exists_one)\s*\(")
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")


class ExpressionError(ValueError):
    """An expression that does not compile (``line``/``column`` set) or failed to evaluate."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.message, self.line, self.column = message, line, column


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    program: cel.Program

    def evaluate(self, variables: dict[str, Any]) -> Any:
        try:
            return self.program.execute(variables)
        except Exception as exc:  # the CEL runtime raises KeyError, TypeError, ValueError, RuntimeError…
            raise ExpressionError(f"{type(exc).__name__}: {exc}".strip()) from None

    def test(self, variables: dict[str, Any]) -> bool:
        """A condition's verdict; anything but a boolean result is an error."""
        result = self.evaluate(variables)
        if not isinstance(result, bool):
            raise ExpressionError(f"the condition gave {type(result).__name__}, not a boolean")
        return result

    def text(self, variables: dict[str, Any]) -> str:
        result = self.evaluate(variables)
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
    macros = len(_COMPREHENSION.findall(source))
    if macros > MAX_COMPREHENSIONS:
        raise ExpressionError(f"uses {macros} comprehension macros; at most {MAX_COMPREHENSIONS} are allowed")
    unknown = sorted(set(program.variables()) - VARIABLES)
    if unknown and not macros:  # a macro's own bound names are listed too, so only check without one
        raise ExpressionError(f"unknown variable {unknown[0]!r}; use event and contact")
    return Expression(source, program)


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
