"""Static bounds of a CEL expression, computed on its syntax tree (:mod:`herald_common.cel_syntax`).

The promise: evaluating an expression over an input of size ``S`` costs at most :attr:`Analysis.cost`
``(S)`` *steps*, a polynomial fixed when the expression is compiled. A step is about one value operation
of the ``cel`` runtime (copying or comparing one list element, eight characters of a string); measured
on the development machine, a step takes 0.001 to 0.05 µs depending on the shape of the work (the model is
pessimistic for strings and regular expressions, closest for maps and nested lists), so
:data:`EXPRESSION_BUDGET` steps take at most ~25 ms. ``S`` is the :func:`measure` of what the
expression reads (:meth:`Analysis.view`), weighted by what the runtime takes to receive it: one per
integer, boolean or null, :data:`BOXED_UNITS` per string, bytes, float, list or map, plus
:data:`ENTRY_UNITS` per map entry and one per :data:`CHARS_PER_UNIT` characters or bytes of a string.

How the polynomial is built, node by node (cost, size of the value):

- literals and field selections cost one step; reading ``event``, ``contact`` or a macro's variable
  costs its size (the runtime copies a variable it reads: inside a macro's body, at every element);
  a string literal's size is its length;
- ``+`` costs (and gives) its operands' sizes (concatenation copies them); ``==``, ``!=``, ``<`` … and
  ``in`` cost their operands' sizes (deep equality, membership over a list);
- a comprehension macro (``all``, ``exists``, ``exists_one``/``existsOne``, ``map``, ``filter``) over a
  range of size ``R`` costs ``R`` iterations of its body, where the body's costs that grow with the
  element bound to the macro's variable are summed over the elements (``Σ f(eᵢ) ≤ f(R)`` for the
  polynomials used here); ``map`` and ``filter`` add ``R`` times the size of their result, because
  the runtime copies the accumulated list at every step (measured: a ``map`` over 8,000 integers
  takes ~2 s, one whose elements are lists far more);
- functions are an allow-list (``size``, ``contains``, ``startsWith``, ``endsWith``, ``matches``, the
  conversions and the timestamp/duration getters), each with its cost; ``matches`` takes a string
  literal pattern only, whose compile cost (paid at every call: ``cel`` does not cache it) and
  per-character cost are estimated from the pattern (:func:`pattern_weight`);
- passing the input to ``cel`` costs ``6·S`` (the runtime converts what it is given on every call),
  which is why the input is first cut down to the fields the expression names (:meth:`Analysis.view`).

What is refused here (an :class:`BoundsProblem` with line and column): a comprehension inside another
(:data:`MAX_COMPREHENSION_DEPTH`), more than :data:`MAX_COMPREHENSIONS`, a name other than ``event``,
``contact`` and a macro's own variable (which may not shadow them), an unknown function or one with
the wrong arguments, and an expression whose cost exceeds :data:`EXPRESSION_BUDGET` whatever its input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from herald_common.cel_syntax import (
    Binary,
    Call,
    Comprehension,
    Conditional,
    Has,
    Ident,
    Index,
    ListLiteral,
    Literal,
    MapLiteral,
    Node,
    Select,
    Unary,
    children,
    position,
)

EXPRESSION_BUDGET: Final = 500_000  # steps per evaluation (at most ~25 ms measured, most far less)
MAX_COMPREHENSIONS: Final = 1
MAX_COMPREHENSION_DEPTH: Final = 1
CHARS_PER_UNIT: Final = 8
BOXED_UNITS: Final = 10  # a string, float, list or map: ~1 µs each to hand to the runtime, an int 0.1 µs
ENTRY_UNITS: Final = 16  # a map entry beside its key and value: ~3 µs each with its key
VARIABLES: Final = frozenset({"event", "contact"})
CONVERT_STEPS: Final = 6  # steps per unit of input handed to the runtime (~0.2-0.35 µs per value)
CALL_STEPS: Final = 10  # a call of the runtime, whatever the expression
MACRO_STEPS: Final = 10  # a macro's own work per element (binding, accumulating)

_CONVERSIONS = frozenset({"int", "uint", "double", "string", "bytes", "dyn", "type", "duration", "timestamp"})
_GETTERS = frozenset(
    {
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfYear",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)
_SEARCHES = frozenset({"contains", "startsWith", "endsWith"})
FUNCTIONS: Final = _CONVERSIONS | _GETTERS | _SEARCHES | {"size", "matches"}


class BoundsProblem(ValueError):
    """An expression refused by its static bounds, at ``line`` and ``column`` (both from 1)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message, self.line, self.column = message, line, column


# -- polynomials in S (the input's size) and E (the size of a macro variable's element)


class Poly:
    """A polynomial with non-negative integer coefficients in ``S`` and ``E``: ``{(i, j): c}`` is
    ``Σ c·Sⁱ·Eʲ``. Non-negative coefficients make it increasing, so evaluating it at an upper bound of
    the input's size gives an upper bound of the cost."""

    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[tuple[int, int], int] | None = None) -> None:
        self.terms: dict[tuple[int, int], int] = {k: v for k, v in (terms or {}).items() if v}

    @staticmethod
    def const(c: int) -> Poly:
        return Poly({(0, 0): c})

    def __add__(self, other: Poly | int) -> Poly:
        other = Poly.const(other) if isinstance(other, int) else other
        out = dict(self.terms)
        for k, v in other.terms.items():
            out[k] = out.get(k, 0) + v
        return Poly(out)

    __radd__ = __add__

    def __mul__(self, other: Poly | int) -> Poly:
        other = Poly.const(other) if isinstance(other, int) else other
        out: dict[tuple[int, int], int] = {}
        for (i1, j1), v1 in self.terms.items():
            for (i2, j2), v2 in other.terms.items():
                k = (i1 + i2, j1 + j2)
                out[k] = out.get(k, 0) + v1 * v2
        return Poly(out)

    __rmul__ = __mul__

    def summed_over(self, n: Poly) -> Poly:
        """Σ over the elements of a range of size ``n`` (a polynomial in S only) of this body cost:
        terms without E are paid once per element (at most ``n`` of them), a term in ``Eʲ`` at most
        ``nʲ`` in total since the elements' sizes add up to at most ``n``."""
        out = Poly()
        for (i, j), c in self.terms.items():
            factor = n if j == 0 else _power(n, j)
            out = out + Poly({(i, 0): c}) * factor
        return out

    def at(self, s: int) -> int:
        assert all(j == 0 for _, j in self.terms), "a cost outside any macro has no E"
        return sum(c * s**i for (i, _), c in self.terms.items())

    @property
    def degree(self) -> int:
        return max((i for i, _ in self.terms), default=0)

    def __repr__(self) -> str:
        parts = [f"{c}·S^{i}·E^{j}" for (i, j), c in sorted(self.terms.items())]
        return " + ".join(parts) or "0"


def _power(p: Poly, k: int) -> Poly:
    out = Poly.const(1)
    for _ in range(k):
        out = out * p
    return out


ONE: Final = Poly.const(1)
S: Final = Poly({(1, 0): 1})
E: Final = Poly({(0, 1): 1})


# -- regular expressions given to matches()

# Compile cost of one occurrence of each kind of atom in the ``regex`` crate ``cel`` uses, in steps:
# (the first occurrence, each further one). Measured: ``\w`` 0.44 ms, ``\pL`` 0.28 ms, ``\D`` 0.13 ms,
# ``\d`` 0.08 ms, ``.`` 0.06 ms, a literal 0.3 µs; Unicode classes compile to large automata.
_ATOMS: Final = {
    "literal": (5, 5),
    "dot": (1_200, 100),
    "digit": (1_400, 400),
    "notdigit": (2_500, 1_300),
    "word": (8_000, 6_000),
    "space": (800, 150),
    "boundary": (400, 50),
    "class": (150, 10),
    "negated": (700, 120),
}
_BASE_PATTERN: Final = 300
_CASELESS: Final = 8  # (?i) multiplies the automaton


def pattern_weight(pattern: str) -> int:
    """An upper estimate, in steps, of compiling ``pattern``: every atom at its cost times the counted
    repetitions around it (``(a{100}){100}`` is 10,000 atoms), plus what its kinds cost once."""
    seen: set[str] = set()
    stack: list[list[int]] = [[0, 0]]  # per group: [total, weight of the last item]
    i, n = 0, len(pattern)
    caseless = "(?i" in pattern or ("(?" in pattern and "i" in pattern.split("(?", 1)[1].split(")", 1)[0])

    def atom(kind: str) -> None:
        seen.add(kind)
        w = _ATOMS[kind][1]
        stack[-1][0] += w
        stack[-1][1] = w

    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            kind, i = _escape_kind(pattern, i)
            atom(kind)
            continue
        if ch == "[":
            weight, i, negated, kinds = _class_weight(pattern, i)
            seen.update(kinds)
            seen.add("negated" if negated else "class")
            stack[-1][0] += weight
            stack[-1][1] = weight
            continue
        if ch == "(":
            stack.append([0, 0])
            i += 1
            if pattern.startswith("?", i):  # (?:…), (?P<name>…), (?<name>…), (?flags) and (?flags:…)
                j = i
                while j < n and pattern[j] not in ":)":
                    j += 1
                if j < n and pattern[j] == ")":  # flags for the rest of the group: not a group
                    stack.pop()
                i = j + 1
            continue
        if ch == ")":
            if len(stack) > 1:
                total = stack.pop()[0]
                stack[-1][0] += total
                stack[-1][1] = total
            i += 1
            continue
        if ch in "*+?":
            stack[-1][0] += stack[-1][1]
            i += 1
            continue
        if ch == "{":
            count, end = _repetition(pattern, i)
            if count is not None:
                stack[-1][0] += stack[-1][1] * max(count - 1, 1)
                i = end
                continue
        if ch == ".":
            atom("dot")
        else:
            atom("literal")
        i += 1
    while len(stack) > 1:  # unbalanced: ``cel`` refuses it at evaluation; keep the estimate whole
        total = stack.pop()[0]
        stack[-1][0] += total
    firsts = sum(_ATOMS[k][0] - _ATOMS[k][1] for k in seen)
    weight = _BASE_PATTERN + firsts + stack[0][0]
    return weight * _CASELESS if caseless else weight


def _escape_kind(pattern: str, i: int) -> tuple[str, int]:
    c = pattern[i + 1]
    end = i + 2
    if c in "pP":
        if pattern.startswith("{", end):
            close = pattern.find("}", end)
            end = len(pattern) if close < 0 else close + 1
        else:
            end += 1
        return "word", end
    if c == "x" and pattern.startswith("{", end):
        close = pattern.find("}", end)
        return "literal", len(pattern) if close < 0 else close + 1
    kinds = {"w": "word", "W": "word", "d": "digit", "D": "notdigit", "s": "space", "S": "space"}
    if c in kinds:
        return kinds[c], end
    if c in "bB":
        return "boundary", end
    return "literal", end


def _class_weight(pattern: str, i: int) -> tuple[int, int, bool, set[str]]:
    """A bracketed class from ``[`` at ``i``: (weight, end, negated, kinds inside)."""
    n = len(pattern)
    j = i + 1
    negated = pattern.startswith("^", j)
    if negated:
        j += 1
    kinds: set[str] = set()
    weight = _ATOMS["negated" if negated else "class"][1]
    depth = 1
    first = True
    while j < n and depth:
        c = pattern[j]
        if c == "\\" and j + 1 < n:
            kind, j = _escape_kind(pattern, j)
            if kind != "literal":
                kinds.add(kind)
                weight += _ATOMS[kind][1]
            else:
                weight += 1
            first = False
            continue
        if c == "[":
            depth += 1
            if pattern.startswith("^", j + 1):
                negated = True
        elif c == "]" and not first:
            depth -= 1
        weight += 1
        first = False
        j += 1
    return weight, j, negated, kinds


def _repetition(pattern: str, i: int) -> tuple[int | None, int]:
    """``{n}``, ``{n,}`` or ``{n,m}`` at ``i``: (the most copies it makes, end); (None, i) otherwise."""
    close = pattern.find("}", i)
    if close < 0:
        return None, i
    body = pattern[i + 1 : close].replace(" ", "")
    low, sep, high = body.partition(",")
    if not low.isdigit() or (high and not high.isdigit()):
        return None, i
    most = int(high) if high else (int(low) + 1 if sep else int(low))
    end = close + 1
    if pattern.startswith("?", end):
        end += 1
    return max(most, 1), end


# -- the analysis

Paths = dict[str, "Paths | None"]  # field → what of it is read (None: all of it)


@dataclass(frozen=True, slots=True)
class Analysis:
    cost: Poly  # steps, in S
    comprehensions: int
    depth: int
    idents: frozenset[str]  # every name the tree reads (roots and macro variables)
    functions: frozenset[str]  # every function it calls
    paths: Paths  # per root variable, the fields it reads (None: the whole variable)
    max_input: int  # the largest input size within EXPRESSION_BUDGET

    def steps(self, size: int) -> int:
        return self.cost.at(size)

    def view(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``variables`` the expression can read: its root variables, and of each only the
        map fields it selects by name (whole below the last one). Selecting a field that is absent
        fails as it would on the whole input."""
        return {k: _prune(variables[k], sub) for k, sub in self.paths.items() if k in variables}


def _prune(value: Any, paths: Paths | None) -> Any:
    if paths is None or not isinstance(value, dict):
        return value
    return {k: _prune(value[k], sub) for k, sub in paths.items() if k in value}


def measure(value: Any, limit: int) -> int:
    """The size of ``value`` (see the module docstring), counted without recursion; the count stops
    soon after it passes ``limit`` (the caller only needs to know it did)."""
    total, stack = 0, [value]
    while stack:
        v = stack.pop()
        if v is None or isinstance(v, bool | int):
            total += 1
        elif isinstance(v, str | bytes | bytearray):
            total += BOXED_UNITS + len(v) // CHARS_PER_UNIT
        elif isinstance(v, dict):
            total += BOXED_UNITS + len(v) * ENTRY_UNITS
            if total + 2 * len(v) > limit:
                return total + 2 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            total += BOXED_UNITS
            if total + len(v) > limit:
                return total + len(v)
            stack.extend(v)
        else:  # a float, a timestamp…
            total += BOXED_UNITS
        if total > limit:
            return total
    return total


def macros(tree: Node) -> tuple[int, int, Comprehension | None]:
    """(how many comprehension macros, how deep they nest, the first one nested in another)."""
    count, deepest, first_nested = 0, 0, None
    stack: list[tuple[Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Comprehension):
            count += 1
            depth += 1
            if depth > MAX_COMPREHENSION_DEPTH and first_nested is None:
                first_nested = node
            deepest = max(deepest, depth)
            stack.append((node.range, depth - 1))  # the range is outside the macro's body
            stack.extend((arg, depth) for arg in node.args)
            continue
        stack.extend((child, depth) for child in children(node))
    return count, deepest, first_nested


class _Walk:
    def __init__(self, source: str) -> None:
        self.source = source
        self.idents: set[str] = set()
        self.functions: set[str] = set()
        self.paths: Paths = {}

    def fail(self, node: Node, message: str) -> BoundsProblem:
        return BoundsProblem(message, *position(self.source, node.offset))

    def read(self, root: str, fields: Iterable[str]) -> None:
        """Record that the expression reads ``root.f1.f2…`` (all of it)."""
        fields = list(fields)
        if root in self.paths and self.paths[root] is None:
            return
        if not fields:
            self.paths[root] = None
            return
        tree = self.paths.setdefault(root, {})
        assert tree is not None
        for f in fields[:-1]:
            sub = tree.setdefault(f, {})
            if sub is None:
                return
            tree = sub
        tree[fields[-1]] = None

    def chain(self, node: Node, scope: str | None) -> tuple[str, list[str]] | None:
        """``event.a.b`` / ``event["a"].b`` as (root, fields), when ``node`` is such a chain."""
        fields: list[str] = []
        while True:
            if isinstance(node, Select):
                fields.append(node.name)
                node = node.operand
            elif isinstance(node, Index) and isinstance(node.index, Literal) and node.index.kind == "string":
                key = _string_value(node.index.text)
                if key is None:
                    return None
                fields.append(key)
                node = node.operand
            elif isinstance(node, Ident) and node.name in VARIABLES and node.name != scope:
                return node.name, fields[::-1]
            else:
                return None

    def visit(self, node: Node, scope: str | None, chained: bool = False) -> tuple[Poly, Poly]:
        """(cost, size) of ``node``; ``scope`` is the macro variable in force, ``chained`` says a
        parent recorded the selection chain (``event.a.b``) this node is a link of."""
        if isinstance(node, Literal):
            if node.kind in ("string", "bytes"):
                return ONE, ONE + len(node.text) // CHARS_PER_UNIT
            return ONE, ONE
        if isinstance(node, Ident):
            self.idents.add(node.name)
            if node.name == scope:
                return ONE + E, E
            if node.name in VARIABLES:
                if not chained:
                    self.read(node.name, ())
                return ONE + S, S  # the runtime copies a variable it reads (measured in a macro's body)
            raise self.fail(node, f"unknown variable {node.name!r}; use event and contact")
        if isinstance(node, Select | Index):
            linked = chained
            if not chained and (found := self.chain(node, scope)) is not None:
                self.read(*found)
                linked = True
            c, z = self.visit(node.operand, scope, chained=linked)
            if isinstance(node, Select):
                return c + 1, z
            ci, zi = self.visit(node.index, scope)
            return c + ci + zi + 1, z
        if isinstance(node, Has):
            found = self.chain(node.select, scope)
            if found is not None:
                self.read(*found)
            c, _ = self.visit(node.select.operand, scope, chained=found is not None)
            return c + 1, ONE
        if isinstance(node, Unary):
            c, _ = self.visit(node.operand, scope)
            return c + 1, ONE
        if isinstance(node, Binary):
            return self.binary(node, scope)
        if isinstance(node, Conditional):
            ct, _ = self.visit(node.test, scope)
            ca, za = self.visit(node.then, scope)
            cb, zb = self.visit(node.otherwise, scope)
            return ct + ca + cb + 1, za + zb
        if isinstance(node, ListLiteral):
            cost, size = ONE + len(node.items), ONE
            for item in node.items:
                c, z = self.visit(item, scope)
                cost, size = cost + c, size + z
            return cost, size
        if isinstance(node, MapLiteral):
            cost, size = ONE, ONE
            for key, value in node.entries:
                ck, zk = self.visit(key, scope)
                cv, zv = self.visit(value, scope)
                cost, size = cost + ck + cv + zk, size + zk + zv
            return cost, size
        if isinstance(node, Call):
            return self.call(node, scope)
        if isinstance(node, Comprehension):
            return self.comprehension(node, scope)
        raise self.fail(node, f"unsupported syntax {type(node).__name__}")

    def binary(self, node: Binary, scope: str | None) -> tuple[Poly, Poly]:
        ca, za = self.visit(node.left, scope)
        cb, zb = self.visit(node.right, scope)
        base = ca + cb + 1
        if node.op in ("&&", "||", "-", "*", "/", "%"):
            return base, ONE
        if node.op == "+":
            return base + za + zb, za + zb
        if node.op == "in":
            return base + za + 2 * zb, ONE
        return base + za + zb, ONE  # == != < <= > >=

    def call(self, node: Call, scope: str | None) -> tuple[Poly, Poly]:
        name, target, args = node.name, node.target, node.args
        self.functions.add(name)
        if name not in FUNCTIONS:
            raise self.fail(node, f"unknown function {name!r}")
        operands = ([target] if target is not None else []) + list(args)
        visited = [self.visit(x, scope) for x in operands]
        cost = ONE + sum((c for c, _ in visited), Poly())
        sizes = [z for _, z in visited]
        if name == "size" and len(operands) == 1:
            return cost + sizes[0], ONE
        if target is None and name in _CONVERSIONS and len(args) == 1:
            return cost + sizes[0], sizes[0] + 4
        if target is not None and name in _GETTERS and not args:
            return cost, ONE
        if target is not None and name in _SEARCHES and len(args) == 1:
            return cost + sizes[0] + sizes[1], ONE
        if target is not None and name == "matches" and len(args) == 1:
            pattern = args[0]
            value = _string_value(pattern.text) if isinstance(pattern, Literal) else None
            if value is None:
                raise self.fail(pattern, "matches() takes a string literal pattern")
            weight = pattern_weight(value)
            return cost + weight + sizes[0] * (1 + weight // 64), ONE
        form = f"x.{name}(…)" if name in _GETTERS | _SEARCHES | {"matches"} else f"{name}(x)"
        raise self.fail(node, f"{name} is called as {form}")

    def comprehension(self, node: Comprehension, scope: str | None) -> tuple[Poly, Poly]:
        assert scope is None, "nesting is refused before costs are computed"
        if node.var in VARIABLES or node.var.startswith("__"):
            raise self.fail(node, f"{node.var!r} cannot name a macro's variable")
        cr, zr = self.visit(node.range, scope)
        body = [self.visit(arg, node.var) for arg in node.args]
        per_element = Poly.const(MACRO_STEPS) + sum((c for c, _ in body), Poly())
        cost = cr + zr + per_element.summed_over(zr)
        if node.macro == "filter":
            self.idents.add(node.var)  # its expansion appends the variable to the result
            return cost + zr * zr, zr  # the runtime copies the accumulated list (deeply) at every step
        if node.macro == "map":
            size = ONE + (body[-1][1] + 1).summed_over(zr)
            return cost + zr * size, size
        return cost, ONE


def _string_value(text: str) -> str | None:
    """The value of a CEL string literal as written (``cel`` itself decodes it); None for bytes or
    anything it will not decode."""
    import cel

    try:
        value = cel.compile(text).execute({})
    except Exception:
        return None
    return value if isinstance(value, str) else None


def analyse(tree: Node, source: str) -> Analysis:
    """The bounds of ``tree`` (parsed from ``source``); :class:`BoundsProblem` for what is refused."""
    count, depth, nested = macros(tree)
    if nested is not None:
        raise BoundsProblem(
            f"comprehension macros nest {depth} deep (a {nested.macro}() inside another); "
            f"at most {MAX_COMPREHENSION_DEPTH} level is allowed",
            *position(source, nested.offset),
        )
    if count > MAX_COMPREHENSIONS:
        raise BoundsProblem(
            f"uses {count} comprehension macros; at most {MAX_COMPREHENSIONS} is allowed", 1, 1
        )
    walk = _Walk(source)
    cost, _ = walk.visit(tree, None)
    cost = cost + CALL_STEPS + CONVERT_STEPS * S
    if cost.at(0 if not walk.paths else 1) > EXPRESSION_BUDGET:
        raise BoundsProblem(
            f"costs more than its evaluation budget ({EXPRESSION_BUDGET:,} steps) for any input", 1, 1
        )
    return Analysis(
        cost=cost,
        comprehensions=count,
        depth=depth,
        idents=frozenset(walk.idents),
        functions=frozenset(walk.functions),
        paths=walk.paths,
        max_input=_largest_within(cost, EXPRESSION_BUDGET),
    )


def _largest_within(cost: Poly, budget: int) -> int:
    """The largest size whose cost is within ``budget`` (the cost grows at least as 3·S)."""
    low, high = 0, budget // CONVERT_STEPS + 1
    while low < high:
        mid = (low + high + 1) // 2
        if cost.at(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
