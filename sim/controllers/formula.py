"""The subset of expr-lang that KEDA `scalingModifiers.formula` is written in.

KEDA compiles the formula with github.com/expr-lang/expr and runs it over
`{triggerName: value}`. We parse it ourselves (never Python `eval`) with the
same operator table, precedence and associativity as expr's parser, so that
`a ?? b + c`, `-a ** 2` or `a < b < c` mean what they mean in a cluster.
Supported: numbers, trigger names, `true`/`false`/`nil`, `+ - * / % ** ^`,
comparisons, `&& || !` (and `and or not`), `a ? b : c`, `a ?: b`, `??`,
parentheses and the calls min, max, abs, ceil, floor, round, float, int.
Anything else is a FormulaError naming the token and its position, because a
formula we silently misread would make every simulated decision wrong.

Values follow expr's runtime: ints stay ints under + - * and %, `/` and `**`
always give floats, division by zero gives ±Inf/NaN (Go float semantics),
`%` needs integers, logic needs booleans and a nil operand is an error except
for `??`, `==` and `!=`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

Value = float | int | bool | None
Env = Mapping[str, float | None]
_Node = Callable[[Env], Value]


class FormulaError(ValueError):
    """A formula that cannot be parsed or evaluated; the message names the culprit."""


# expr-lang/expr parser/operator/operator.go: precedence and associativity.
_BINARY: dict[str, tuple[int, bool]] = {  # op -> (precedence, right-associative)
    "or": (10, False),
    "||": (10, False),
    "and": (15, False),
    "&&": (15, False),
    "==": (20, False),
    "!=": (20, False),
    "<": (20, False),
    ">": (20, False),
    ">=": (20, False),
    "<=": (20, False),
    "+": (30, False),
    "-": (30, False),
    "*": (60, False),
    "/": (60, False),
    "%": (60, False),
    "**": (100, True),
    "^": (100, True),
    "??": (500, False),
}
_UNARY: dict[str, int] = {"not": 50, "!": 50, "-": 90, "+": 90}
_COMPARISONS = frozenset({"<", ">", "<=", ">="})
_WORD_OPERATORS = frozenset({"and", "or", "not"})
# Words and symbols expr knows but this subset does not: named so the error is specific.
_UNSUPPORTED_WORDS = frozenset({"in", "matches", "contains", "startsWith", "endsWith", "let", "if", "else"})

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+)
        |[0-9][0-9_]*(?:\.[0-9_]+)?(?:[eE][+-]?[0-9_]+)?)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>\?\?|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%^<>!?:(),])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<other>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number" | "name" | "op" | "string" | "other" | "eof"
    text: str
    pos: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN_RE.match(source, pos)
        assert m is not None and m.lastgroup is not None  # `other` matches any character
        kind = m.lastgroup
        if kind != "ws":
            text = m.group()
            if kind == "name" and text in _WORD_OPERATORS:
                kind = "op"
            tokens.append(_Token(kind, text, pos))
        pos = m.end()
    tokens.append(_Token("eof", "", len(source)))
    return tokens


def _type_name(v: Value) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    return "int" if isinstance(v, int) else "float64"


def _is_number(v: Value) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _numbers(op: str, a: Value, b: Value) -> tuple[float | int, float | int]:
    ta, tb = type(a), type(b)  # exact types: bool is not a number here
    if (ta is float or ta is int) and (tb is float or tb is int):
        return cast("tuple[float | int, float | int]", (a, b))
    raise FormulaError(f"invalid operation: {_type_name(a)} {op} {_type_name(b)}")


def _divide(a: float, b: float) -> float:
    """Go float64 division: no exception, ±Inf or NaN instead."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _power(a: float, b: float) -> float:
    """Go math.Pow: domain errors are NaN and overflow is Inf, never an exception."""
    try:
        return math.pow(a, b)
    except ValueError:
        return math.nan
    except OverflowError:
        return math.inf


def _arith(op: str, a: Value, b: Value) -> Value:
    x, y = _numbers(op, a, b)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        return _divide(float(x), float(y))
    if op == "%":
        if not (isinstance(x, int) and isinstance(y, int)):
            raise FormulaError(f"invalid operation: {_type_name(a)} % {_type_name(b)} (% needs integers)")
        if y == 0:
            raise FormulaError("integer divide by zero")
        r = abs(x) % abs(y)
        return -r if x < 0 else r  # Go truncates toward zero
    return _power(float(x), float(y))  # ** and ^


def _compare(op: str, a: Value, b: Value) -> bool:
    x, y = _numbers(op, a, b)
    if op == "<":
        return x < y
    if op == ">":
        return x > y
    if op == "<=":
        return x <= y
    return x >= y


def _equal(a: Value, b: Value) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    return a is None and b is None


def _truth(op: str, v: Value) -> bool:
    if not isinstance(v, bool):
        raise FormulaError(f"invalid operation: {op} needs a bool, got {_type_name(v)}")
    return v


def _one_number(fn: str, args: list[Value]) -> float | int:
    if len(args) != 1:
        raise FormulaError(f"{fn}() takes 1 argument, got {len(args)}")
    v = args[0]
    if not _is_number(v):
        raise FormulaError(f"invalid argument for {fn} (type {_type_name(v)})")
    assert isinstance(v, int | float)
    return v


def _go_round(x: float) -> float:
    """Go math.Round: half away from zero (Python's round() is half to even)."""
    if math.isnan(x) or math.isinf(x):
        return x
    t = float(math.trunc(x))
    if abs(x - t) >= 0.5:  # x - t is exact, unlike x + 0.5
        t += math.copysign(1.0, x)
    return t


def _go_int(x: float | int) -> int:
    if isinstance(x, int):
        return x
    if math.isnan(x) or math.isinf(x):
        raise FormulaError(f"int() of {x} is undefined")
    return int(x)  # truncates toward zero, like Go's conversion


def _min_max(fn: str, args: list[Value]) -> Value:
    if not args:
        raise FormulaError(f"{fn}() needs at least 1 argument")
    best: Value = None
    for v in args:
        if not _is_number(v):
            raise FormulaError(f"invalid argument for {fn} (type {_type_name(v)})")
        assert isinstance(v, int | float)
        if best is None or (v > best if fn == "max" else v < best):
            best = v
    return best


def _call(fn: str, args: list[Value]) -> Value:
    if fn in ("min", "max"):
        return _min_max(fn, args)
    x = _one_number(fn, args)
    if fn == "abs":
        return abs(x)
    if fn == "float":
        return float(x)
    if fn == "int":
        return _go_int(x)
    fx = float(x)
    if fn == "ceil":
        return math.ceil(fx) * 1.0 if math.isfinite(fx) else fx
    if fn == "floor":
        return math.floor(fx) * 1.0 if math.isfinite(fx) else fx
    return _go_round(fx)  # round


_FUNCTIONS = frozenset({"min", "max", "abs", "ceil", "floor", "round", "float", "int"})


class _Parser:
    """Precedence climbing shaped like expr's parseExpression, building closures."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.names: set[str] = set()

    @property
    def cur(self) -> _Token:
        return self.tokens[self.i]

    def error(self, what: str, tok: _Token | None = None) -> FormulaError:
        t = tok or self.cur
        shown = "end of formula" if t.kind == "eof" else repr(t.text)
        return FormulaError(f"{what} {shown} at position {t.pos} in formula {self.source!r}")

    def unexpected(self, tok: _Token | None = None) -> FormulaError:
        """Constructs expr has but this subset lacks are named as such, not as typos."""
        t = tok or self.cur
        unsupported = t.kind in ("string", "other") or t.text in _UNSUPPORTED_WORDS or t.text == "not"
        return self.error("unsupported syntax" if unsupported else "unexpected token", t)

    def expect(self, text: str) -> None:
        if self.cur.kind != "op" or self.cur.text != text:
            raise self.error(f"expected {text!r}, found")
        self.i += 1

    def parse(self) -> _Node:
        if self.cur.kind == "eof":
            raise FormulaError("formula is empty")
        node = self.expression(0)
        if self.cur.kind != "eof":
            raise self.unexpected()
        return node

    def expression(self, precedence: int) -> _Node:
        left = self.primary()
        prev_op = ""
        while self.cur.kind == "op" and self.cur.text in _BINARY:
            op_tok = self.cur
            op = op_tok.text
            prec, right_assoc = _BINARY[op]
            if prec < precedence:
                break
            self.i += 1
            if prev_op == "??" and op != "??":
                raise self.error(
                    "operator and coalesce expressions (??) cannot be mixed without parentheses:", op_tok
                )
            if op in _COMPARISONS:
                left = self.comparison(left, op, prec)
            else:
                right = self.expression(prec if right_assoc else prec + 1)
                left = _binary(op, left, right)
            prev_op = op
        if precedence == 0:
            left = self.conditional(left)
        return left

    def comparison(self, left: _Node, op: str, prec: int) -> _Node:
        """`a < b < c` is `a < b && b < c`, as in expr; b is evaluated once per use."""
        root: _Node | None = None
        while True:
            right = self.expression(prec + 1)
            cmp = _binary(op, left, right)
            root = cmp if root is None else _binary("&&", root, cmp)
            left = right
            if not (self.cur.kind == "op" and self.cur.text in _COMPARISONS):
                return root
            op = self.cur.text
            self.i += 1

    def conditional(self, cond: _Node) -> _Node:
        while self.cur.kind == "op" and self.cur.text == "?":
            self.i += 1
            if self.cur.kind == "op" and self.cur.text == ":":
                self.i += 1
                on_false = self.expression(0)
                cond = _elvis(cond, on_false)
            else:
                on_true = self.expression(0)
                self.expect(":")
                on_false = self.expression(0)
                cond = _ternary(cond, on_true, on_false)
        return cond

    def primary(self) -> _Node:
        tok = self.cur
        if tok.kind == "op" and tok.text in _UNARY:
            self.i += 1
            operand = self.expression(_UNARY[tok.text])
            return self.postfix(_unary(tok.text, operand))
        if tok.kind == "op" and tok.text == "(":
            self.i += 1
            inner = self.expression(0)
            self.expect(")")
            return self.postfix(inner)
        if tok.kind == "number":
            self.i += 1
            return self.postfix(_constant(self.number(tok)))
        if tok.kind == "name":
            self.i += 1
            if tok.text in _UNSUPPORTED_WORDS:
                raise self.unexpected(tok)
            if tok.text in ("true", "false"):
                return self.postfix(_constant(tok.text == "true"))
            if tok.text == "nil":
                return self.postfix(_constant(None))
            if self.cur.kind == "op" and self.cur.text == "(":
                return self.postfix(self.call(tok))
            self.names.add(tok.text)
            return self.postfix(_identifier(tok.text))
        if tok.kind == "eof":
            raise self.error("unexpected")
        raise self.unexpected(tok)

    def postfix(self, node: _Node) -> _Node:
        if self.cur.kind == "op" and self.cur.text == "(":
            raise self.error("unsupported syntax (calling a value)")
        return node

    def call(self, name_tok: _Token) -> _Node:
        if name_tok.text not in _FUNCTIONS:
            raise self.error(f"unsupported function (supported: {', '.join(sorted(_FUNCTIONS))}):", name_tok)
        self.expect("(")
        args: list[_Node] = []
        if not (self.cur.kind == "op" and self.cur.text == ")"):
            args.append(self.expression(0))
            while self.cur.kind == "op" and self.cur.text == ",":
                self.i += 1
                args.append(self.expression(0))
        self.expect(")")
        fn = name_tok.text
        return lambda env: _call(fn, [a(env) for a in args])

    def number(self, tok: _Token) -> float | int:
        text = tok.text.replace("_", "")
        lower = text.lower()
        try:
            if lower.startswith(("0x", "0b", "0o")):
                return int(text, 0)
            if "." in lower or "e" in lower:
                return float(text)
            return int(text, 10)
        except ValueError:
            raise self.error("invalid number literal", tok) from None


def _constant(v: Value) -> _Node:
    return lambda env: v


def _identifier(name: str) -> _Node:
    # expr over a map returns nil for a missing key; KEDA relies on that for failing triggers.
    return lambda env: env.get(name)


def _unary(op: str, operand: _Node) -> _Node:
    if op in ("!", "not"):
        return lambda env: not _truth(op, operand(env))

    def sign(env: Env) -> Value:
        v = operand(env)
        if not _is_number(v):
            raise FormulaError(f"invalid operation: {op}{_type_name(v)}")
        assert isinstance(v, int | float)
        return -v if op == "-" else v

    return sign


def _binary(op: str, left: _Node, right: _Node) -> _Node:
    if op in ("&&", "and"):
        return lambda env: _truth(op, left(env)) and _truth(op, right(env))
    if op in ("||", "or"):
        return lambda env: _truth(op, left(env)) or _truth(op, right(env))
    if op == "??":

        def coalesce(env: Env) -> Value:
            v = left(env)
            return right(env) if v is None else v

        return coalesce
    if op == "==":
        return lambda env: _equal(left(env), right(env))
    if op == "!=":
        return lambda env: not _equal(left(env), right(env))
    if op in _COMPARISONS:
        return lambda env: _compare(op, left(env), right(env))
    return lambda env: _arith(op, left(env), right(env))


def _ternary(cond: _Node, on_true: _Node, on_false: _Node) -> _Node:
    return lambda env: on_true(env) if _truth("?:", cond(env)) else on_false(env)


def _elvis(value: _Node, on_false: _Node) -> _Node:
    """`a ?: b`: expr yields a unless it is nil or false."""

    def run(env: Env) -> Value:
        v = value(env)
        return on_false(env) if v is None or v is False else v

    return run


@dataclass(frozen=True)
class Formula:
    """A parsed formula: cheap to evaluate many times (a tree of closures)."""

    source: str
    names: frozenset[str]
    _root: _Node

    def evaluate(self, env: Env) -> Value:
        return self._root(env)


def compile_formula(source: str) -> Formula:
    parser = _Parser(source)
    root = parser.parse()
    return Formula(source=source, names=frozenset(parser.names), _root=root)
