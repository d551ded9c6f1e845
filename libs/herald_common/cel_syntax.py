"""A CEL lexer and parser that give the syntax tree Herald bounds expressions on.

The ``cel`` package compiles and runs expressions but shows no syntax tree, so this module parses the
same text again, following the grammar ``cel`` itself is generated from (cel-spec's ``CEL.g4``):

- comments run from ``//`` to the next line feed (a carriage return does not end one) and are dropped;
- string and bytes literals in every quote form — ``"…"``, ``'…'``, ``\"\"\"…\"\"\"``, ``'''…'''``, each
  raw (``r``/``R``: a backslash escapes nothing, so ``r"\\"`` is one backslash) or not, with a
  ``b``/``B`` prefix for bytes (``br"…"``, never ``rb"…"``) — are single tokens whatever they contain;
  escapes are checked as the grammar has them;
- macros are calls *in the tree*: ``x.exists(a, p)`` is a :class:`Comprehension` however the text
  between ``exists`` and ``(`` is spaced or commented, and ``"exists("`` inside a string is text.

The parser accepts a subset of what ``cel`` accepts (message construction, reserved words as names and
nesting deeper than :data:`MAX_NESTING` are refused here, with line and column); the caller compiles
with ``cel`` first and cross-checks the names each side found (:mod:`herald_common.cel_cost`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

_T = TypeVar("_T")

MAX_NESTING = 32  # brackets, calls and parentheses inside one another (``cel`` stops at 96)
MAX_TREE_DEPTH = 200  # syntax-tree depth, so walking the tree never meets Python's recursion limit

MACROS = frozenset({"all", "exists", "exists_one", "existsOne", "map", "filter"})
KEYWORDS = frozenset({"true", "false", "null", "in"})
RESERVED = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!", "?", ":", ".", ",")
_BRACKETS = "()[]{}"
_WHITESPACE = " \t\r\n\f"
_SIMPLE_ESCAPES = frozenset("abfnrtv\"'\\?`")
_HEX = frozenset("0123456789abcdefABCDEF")
_STRING_PREFIXES = frozenset({"", "r", "R", "b", "B", "br", "bR", "Br", "BR"})


class SyntaxProblem(ValueError):
    """Text this parser refuses, at ``line`` and ``column`` (both from 1)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message, self.line, self.column = message, line, column


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # int, uint, float, string, bytes, ident, keyword, op, eof
    text: str
    offset: int


# The tree. Every node keeps the offset of its first token, for messages.
@dataclass(frozen=True, slots=True)
class Node:
    offset: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    kind: str  # int, uint, float, string, bytes, bool, null
    text: str  # as written: its length bounds the value's


@dataclass(frozen=True, slots=True)
class Ident(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Select(Node):
    operand: Node
    name: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    target: Node | None  # the receiver of ``x.f(...)``; None for ``f(...)``
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Has(Node):
    select: Select


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "!" or "-"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    test: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class ListLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLiteral(Node):
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Comprehension(Node):
    macro: str  # one of MACROS
    range: Node
    var: str
    args: tuple[Node, ...] = field(default=())  # the predicate; for map, [filter,] transform


def position(source: str, offset: int) -> tuple[int, int]:
    """Line and column (both from 1) of ``offset``; lines end at line feeds, as in ``cel``."""
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def tokens(source: str) -> list[Token]:
    """The tokens of ``source``, comments and whitespace dropped, ending with an ``eof`` token."""
    found: list[Token] = []
    i, n = 0, len(source)

    while i < n:
        ch = source[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            j = i + 1
            while j < n and source[j].isascii() and (source[j].isalnum() or source[j] == "_"):
                j += 1
            word = source[i:j]
            if j < n and source[j] in "\"'" and word in _STRING_PREFIXES:
                i = _string(source, i, j, found)
                continue
            found.append(Token("keyword" if word in KEYWORDS else "ident", word, i))
            i = j
            continue
        if ch in "\"'":
            i = _string(source, i, i, found)
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and source[i + 1].isdigit()):
            i = _number(source, i, found)
            continue
        two = source[i : i + 2]
        if two in _OPERATORS:
            found.append(Token("op", two, i))
            i += 2
            continue
        if ch in _OPERATORS or ch in _BRACKETS:
            found.append(Token("op", ch, i))
            i += 1
            continue
        raise _fail(source, f"unexpected character {ch!r}", i)
    found.append(Token("eof", "", n))
    return found


def _fail(source: str, message: str, at: int) -> SyntaxProblem:
    return SyntaxProblem(message, *position(source, at))


def _string(source: str, start: int, quote_at: int, found: list[Token]) -> int:
    """Lex one string or bytes literal whose prefix starts at ``start`` and quote at ``quote_at``."""
    prefix = source[start:quote_at]
    raw, is_bytes = "r" in prefix.lower(), "b" in prefix.lower()
    q = source[quote_at]
    triple = source.startswith(q * 3, quote_at)
    closing = q * 3 if triple else q
    i, n = quote_at + len(closing), len(source)
    while True:
        if i >= n:
            raise _fail(source, "unterminated string literal", start)
        if source.startswith(closing, i):
            i += len(closing)
            break
        ch = source[i]
        if not triple and ch in "\r\n":
            raise _fail(source, "line break in a string literal", i)
        if ch == "\\" and not raw:
            i = _escape(source, i)
            continue
        i += 1
    found.append(Token("bytes" if is_bytes else "string", source[start:i], start))
    return i


def _escape(source: str, i: int) -> int:
    """The offset after the escape sequence at ``i`` (a backslash), as CEL.g4 defines them."""
    nxt = source[i + 1 : i + 2]
    if nxt in _SIMPLE_ESCAPES and nxt:
        return i + 2
    if nxt in ("x", "X"):
        width = 2
    elif nxt == "u":
        width = 4
    elif nxt == "U":
        width = 8
    elif nxt in ("0", "1", "2", "3"):
        digits = source[i + 2 : i + 4]
        if len(digits) == 2 and all(c in "01234567" for c in digits):
            return i + 4
        raise _fail(source, "invalid octal escape", i)
    else:
        raise _fail(source, "invalid escape sequence", i)
    digits = source[i + 2 : i + 2 + width]
    if len(digits) != width or not all(c in _HEX for c in digits):
        raise _fail(source, "invalid hexadecimal escape", i)
    return i + 2 + width


def _digits(source: str, i: int, allowed: str | frozenset[str] = "0123456789") -> int:
    while i < len(source) and source[i] in allowed:
        i += 1
    return i


def _number(source: str, start: int, found: list[Token]) -> int:
    n = len(source)
    if source.startswith(("0x", "0X"), start) and start + 2 < n and source[start + 2] in _HEX:
        i = _digits(source, start + 2, _HEX)
        if i < n and source[i] in "uU":
            found.append(Token("uint", source[start : i + 1], start))
            return i + 1
        found.append(Token("int", source[start:i], start))
        return i
    i = _digits(source, start)
    is_float = False
    if i + 1 < n and source[i] == "." and source[i + 1].isdigit():
        i = _digits(source, i + 1)
        is_float = True
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j < n and source[j].isdigit():
            i = _digits(source, j)
            is_float = True
    if is_float:
        found.append(Token("float", source[start:i], start))
        return i
    if i < n and source[i] in "uU":
        found.append(Token("uint", source[start : i + 1], start))
        return i + 1
    found.append(Token("int", source[start:i], start))
    return i


_RELATIONS = frozenset({"<", "<=", ">=", ">", "==", "!=", "in"})


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.toks = tokens(source)
        self.pos = 0
        self.nesting = 0

    # -- helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "keyword") and tok.text == text

    def take(self) -> Token:
        tok = self.peek()
        self.pos += 1
        return tok

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise self.fail(f"expected {text!r}")
        return self.take()

    def fail(self, message: str, offset: int | None = None) -> SyntaxProblem:
        tok = self.peek()
        at = tok.offset if offset is None else offset
        if offset is None and tok.kind != "eof":
            message = f"{message}, found {tok.text!r}"
        return SyntaxProblem(message, *position(self.source, at))

    def enter(self) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.fail(f"nests more than {MAX_NESTING} levels deep")

    def leave(self) -> None:
        self.nesting -= 1

    # -- grammar
    def parse(self) -> Node:
        node = self.expr()
        if self.peek().kind != "eof":
            raise self.fail("expected the end of the expression")
        return node

    def expr(self) -> Node:
        start = self.peek().offset
        test = self.logical("||", self.conditional_and)
        if not self.at("?"):
            return test
        self.take()
        then = self.logical("||", self.conditional_and)
        self.expect(":")
        self.enter()
        otherwise = self.expr()
        self.leave()
        return Conditional(start, test, then, otherwise)

    def logical(self, op: str, operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.at(op):
            self.take()
            node = Binary(node.offset, op, node, operand())
        return node

    def conditional_and(self) -> Node:
        return self.logical("&&", self.relation)

    def relation(self) -> Node:
        node = self.addition()
        while self.peek().kind in ("op", "keyword") and self.peek().text in _RELATIONS:
            op = self.take().text
            node = Binary(node.offset, op, node, self.addition())
        return node

    def addition(self) -> Node:
        node = self.multiplication()
        while self.at("+") or self.at("-"):
            op = self.take().text
            node = Binary(node.offset, op, node, self.multiplication())
        return node

    def multiplication(self) -> Node:
        node = self.unary()
        while self.at("*") or self.at("/") or self.at("%"):
            op = self.take().text
            node = Binary(node.offset, op, node, self.unary())
        return node

    def unary(self) -> Node:
        ops: list[Token] = []
        while self.at("!") or self.at("-"):
            if ops and ops[-1].text != self.peek().text:
                break  # ``!-x`` is not in the grammar: each run is one operator repeated
            ops.append(self.take())
        node = self.member()
        for tok in reversed(ops):
            node = Unary(tok.offset, tok.text, node)
        return node

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.at("."):
                self.take()
                name_tok = self.take()
                if name_tok.kind != "ident":
                    raise self.fail("expected a field or method name", name_tok.offset)
                if self.at("("):
                    args = self.arguments()
                    node = self.call(node, name_tok, args)
                else:
                    node = Select(node.offset, node, name_tok.text)
            elif self.at("["):
                self.take()
                self.enter()
                index = self.expr()
                self.leave()
                self.expect("]")
                node = Index(node.offset, node, index)
            elif self.at("{"):
                raise self.fail("message construction is not supported")
            else:
                return node

    def call(self, target: Node, name: Token, args: tuple[Node, ...]) -> Node:
        macro = name.text in MACROS and (len(args) == 2 or (name.text == "map" and len(args) == 3))
        if not macro:
            return Call(target.offset, name.text, target, args)
        var = args[0]
        if not isinstance(var, Ident):
            raise SyntaxProblem("argument must be a simple name", *position(self.source, var.offset))
        return Comprehension(name.offset, name.text, target, var.name, args[1:])

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        self.enter()
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.take()
                args.append(self.expr())
        self.leave()
        self.expect(")")
        return tuple(args)

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "." and self.peek(1).kind == "ident":
            raise self.fail("a name with a leading dot is not supported")
        if tok.kind == "ident":
            self.take()
            if tok.text in RESERVED:
                raise self.fail(f"reserved identifier: {tok.text}", tok.offset)
            if self.at("("):
                args = self.arguments()
                if tok.text == "has" and len(args) == 1:
                    if not isinstance(args[0], Select):
                        raise self.fail("invalid argument to has() macro", args[0].offset)
                    return Has(tok.offset, args[0])
                return Call(tok.offset, tok.text, None, args)
            return Ident(tok.offset, tok.text)
        if tok.kind in ("int", "uint", "float", "string", "bytes"):
            self.take()
            return Literal(tok.offset, tok.kind, tok.text)
        if tok.kind == "keyword" and tok.text != "in":
            self.take()
            return Literal(tok.offset, "null" if tok.text == "null" else "bool", tok.text)
        if self.at("("):
            self.take()
            self.enter()
            node = self.expr()
            self.leave()
            self.expect(")")
            return node
        if self.at("["):
            self.take()
            self.enter()
            items = self.sequence("]", self.expr)
            self.leave()
            return ListLiteral(tok.offset, tuple(items))
        if self.at("{"):
            self.take()
            self.enter()
            entries = self.sequence("}", self.entry)
            self.leave()
            return MapLiteral(tok.offset, tuple(entries))
        raise self.fail("expected an operand")

    def sequence(self, close: str, item: Callable[[], _T]) -> list[_T]:
        """``item (',' item)* ','? close``, or just ``','? close``: CEL allows ``[,]`` and ``{,}``."""
        found: list[_T] = []
        if not self.at(close) and not self.at(","):
            found.append(item())
            while self.at(",") and not (self.peek(1).kind == "op" and self.peek(1).text == close):
                self.take()
                found.append(item())
        if self.at(","):
            self.take()
        self.expect(close)
        return found

    def entry(self) -> tuple[Node, Node]:
        key = self.expr()
        self.expect(":")
        return key, self.expr()


def parse(source: str) -> Node:
    """The syntax tree of ``source``; :class:`SyntaxProblem` with line and column for text refused."""
    tree = _Parser(source).parse()
    deepest = _depth(tree)
    if deepest > MAX_TREE_DEPTH:
        raise SyntaxProblem(f"nests more than {MAX_TREE_DEPTH} operations deep", 1, 1)
    return tree


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Select):
        return (node.operand,)
    if isinstance(node, Index):
        return (node.operand, node.index)
    if isinstance(node, Call):
        return ((node.target,) if node.target is not None else ()) + node.args
    if isinstance(node, Has):
        return (node.select,)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Conditional):
        return (node.test, node.then, node.otherwise)
    if isinstance(node, ListLiteral):
        return node.items
    if isinstance(node, MapLiteral):
        return tuple(part for entry in node.entries for part in entry)
    if isinstance(node, Comprehension):
        return (node.range, *node.args)
    return ()


def _depth(root: Node) -> int:
    """The tree's depth, iteratively (a long chain ``a + b + …`` is deep but legal)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in children(node))
    return deepest
