"""Run search: a small query language compiled to parameterised SQL.

Grammar (keywords are case-insensitive; NOT binds tighter than AND, AND tighter than OR)::

    query      := or_expr | (empty: every run)
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := field op value
                | field ["not"] "in" "(" value ("," value)* ")"
                | field "is" ["not"] "null"
    field      := ("metrics" | "params" | "tags" | "attributes") "." name | attribute
    op         := = | == | != | <> | < | <= | > | >= | like | ilike | not like | not ilike

Names with spaces or dots are quoted: ``metrics."val loss"`` or ``tags.`team.name```.
Metrics compare on their latest value. Params and tags are text; comparing one with ``<``,
``>``... and a number compares it as a number where its text is a number. Values are only
ever bound as parameters, never pasted into SQL.

>>> tree = parse("metrics.f1 > 0.8 and (params.model = 'gbm' or tags.team = 'risk')")
>>> tree.op, tree.parts[1].op
('and', 'or')
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (ColumnElement, Float, and_, case, cast, exists, func, not_, or_, select,
                        true)

from prodml.errors import QuerySyntaxError
from prodml.store import tables as t

ENTITY_ALIASES = {"metric": "metrics", "metrics": "metrics", "param": "params",
                  "params": "params", "tag": "tags", "tags": "tags", "attribute": "attributes",
                  "attributes": "attributes", "attr": "attributes", "run": "attributes"}

ATTRIBUTES: dict[str, Any] = {
    "id": t.runs.c.id, "run_id": t.runs.c.id, "name": t.runs.c.name,
    "run_name": t.runs.c.name, "status": t.runs.c.status, "start_time": t.runs.c.start_time,
    "end_time": t.runs.c.end_time, "user": t.runs.c.user, "host": t.runs.c.host,
    "commit": t.runs.c.code_commit, "code_commit": t.runs.c.code_commit,
    "branch": t.runs.c.code_branch, "code_branch": t.runs.c.code_branch,
    "dirty": t.runs.c.code_dirty, "wall_time_s": t.runs.c.wall_time_s,
    "cpu_time_s": t.runs.c.cpu_time_s, "peak_memory_bytes": t.runs.c.peak_memory_bytes,
    "experiment": (select(t.experiments.c.name)
                   .where(t.experiments.c.id == t.runs.c.experiment_id).scalar_subquery()),
}
COMPARISONS = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}
#: How deep "not" and parentheses may nest. The parser and the compiler recurse once a level;
#: no real query comes near this, and a crafted one is refused before the stack runs out.
MAX_QUERY_DEPTH = 32
TEXT_MATCH = {"like", "ilike", "not like", "not ilike"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<backtick>`[^`]*`)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),.])
  | (?P<word>[A-Za-z_][\w\-:/]*)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def lower(self) -> str:
        return self.text.lower()


@dataclass(frozen=True)
class Field:
    entity: str  # metrics, params, tags, attributes
    key: str
    pos: int


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: str
    value: Any  # float, str, None (for is null), or a tuple for in


@dataclass(frozen=True)
class BoolOp:
    op: str  # and, or, not
    parts: tuple[Any, ...]


def tokenize(query: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            raise QuerySyntaxError(query, pos, f"unexpected character {query[pos]!r}")
        if m.lastgroup != "ws":
            tokens.append(Token(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    if text[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.depth = 0

    def fail(self, problem: str, token: Token | None = None) -> QuerySyntaxError:
        pos = token.pos if token else len(self.query)
        return QuerySyntaxError(self.query, pos, problem)

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end of query")
        self.i += 1
        return token

    def at_word(self, *words: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token.kind == "word" and token.lower in words

    def expect(self, text: str, what: str) -> Token:
        token = self.peek()
        if token is None or token.lower != text:
            found = f"found {token.text!r}" if token else "the query ended"
            raise self.fail(f"expected {what}, {found}", token)
        return self.take()

    def parse(self) -> Any:
        if not self.tokens:
            return None
        tree = self.or_expr()
        if (extra := self.peek()) is not None:
            raise self.fail(f"unexpected {extra.text!r}: join conditions with 'and' or 'or'",
                            extra)
        return tree

    def or_expr(self) -> Any:
        parts = [self.and_expr()]
        while self.at_word("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_expr(self) -> Any:
        parts = [self.not_expr()]
        while self.at_word("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def not_expr(self) -> Any:
        token = self.peek()
        if token is None or not (self.at_word("not") or token.text == "("):
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_QUERY_DEPTH:
            raise self.fail(f"'not' and parentheses nest more than {MAX_QUERY_DEPTH} levels "
                            "deep", token)
        self.take()
        if token.text == "(":
            tree = self.or_expr()
            self.expect(")", "')' to close the '(' at position " + str(token.pos))
        else:
            tree = BoolOp("not", (self.not_expr(),))
        self.depth -= 1
        return tree

    def field(self) -> Field:
        token = self.take()
        if token.kind != "word":
            raise self.fail(f"expected a field such as metrics.f1 or params.model, found "
                            f"{token.text!r}", token)
        nxt = self.peek()
        if nxt is not None and nxt.text == ".":
            entity = ENTITY_ALIASES.get(token.lower)
            if entity is None:
                raise self.fail(f"unknown field group {token.text!r}: use metrics, params, tags "
                                "or attributes", token)
            self.take()
            key_token = self.take()
            if key_token.kind == "word":
                key = key_token.text
                while self.peek() is not None and self.peek().text == "." and \
                        self.peek(1) is not None and self.peek(1).kind == "word":  # type: ignore[union-attr]
                    self.take()
                    key += "." + self.take().text
            elif key_token.kind in ("string", "backtick"):
                key = _unquote(key_token.text)
            else:
                raise self.fail(f"expected a name after '{token.text}.', found "
                                f"{key_token.text!r}", key_token)
        else:
            entity, key = "attributes", token.text
        if entity == "attributes" and key.lower() not in ATTRIBUTES:
            raise self.fail(f"unknown attribute {key!r}; known: "
                            + ", ".join(sorted(ATTRIBUTES)), token)
        return Field(entity, key.lower() if entity == "attributes" else key, token.pos)

    def value(self) -> Any:
        token = self.take()
        if token.kind == "number":
            return float(token.text)
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "word" and token.lower in ("true", "false"):
            return token.lower == "true"
        raise self.fail(f"expected a value (a number or a quoted string), found "
                        f"{token.text!r}", token)

    def comparison(self) -> Comparison:
        field = self.field()
        token = self.peek()
        if token is None:
            raise self.fail(f"expected an operator after {field.entity}.{field.key}")
        if token.kind == "op":
            self.take()
            op = "=" if token.text == "==" else "!=" if token.text == "<>" else token.text
            return Comparison(field, op, self.value())
        if self.at_word("is"):
            self.take()
            negated = self.at_word("not")
            if negated:
                self.take()
            self.expect("null", "'null' after 'is'")
            return Comparison(field, "is not null" if negated else "is null", None)
        negated = self.at_word("not") and self.at_word("in", "like", "ilike", offset=1)
        if negated:
            self.take()
        if self.at_word("like", "ilike"):
            op = ("not " if negated else "") + self.take().lower
            value = self.value()
            if not isinstance(value, str):
                raise self.fail(f"{op} needs a quoted pattern", self.tokens[self.i - 1])
            return Comparison(field, op, value)
        if self.at_word("in"):
            self.take()
            self.expect("(", "'(' after 'in'")
            values = [self.value()]
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                values.append(self.value())
            self.expect(")", "')' to close the list")
            return Comparison(field, "not in" if negated else "in", tuple(values))
        raise self.fail(f"expected an operator (=, !=, <, <=, >, >=, like, in, is null) after "
                        f"{field.entity}.{field.key}, found {token.text!r}", token)


def parse(query: str) -> Any:
    """Parse a query into a tree of :class:`BoolOp` and :class:`Comparison` (``None`` if empty)."""
    return _Parser(query).parse()


# ---------------------------------------------------------------------------------------------
# Compilation to SQLAlchemy expressions over the ``runs`` table.

def _numeric_text(column: Any, dialect: str) -> Any:
    """``column`` as a number where its text is one, else NULL (never a cast error)."""
    if dialect == "postgresql":
        pattern = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
        return case((column.op("~")(pattern), cast(column, Float)), else_=None)
    return func.prodml_number(column)  # registered on every SQLite connection


_COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge}


def _apply(column: Any, op: str, value: Any) -> Any:
    if op in _COMPARE:  # only the one asked for: SQLAlchemy refuses `column < True`
        return _COMPARE[op](column, value)
    if op == "like":
        return column.like(value)
    if op == "not like":
        return column.not_like(value)
    if op == "ilike":
        return column.ilike(value)
    if op == "not ilike":
        return column.not_ilike(value)
    if op == "in":
        return column.in_(list(value))
    if op == "not in":
        return column.not_in(list(value))
    raise AssertionError(op)


class _NotANumber(Exception):
    """A metric compared with text; the caller knows the query and reports the position."""


def _key_value_condition(node: Comparison, dialect: str) -> ColumnElement[bool]:
    table = {"metrics": t.latest_metrics, "params": t.params, "tags": t.tags}[node.field.entity]
    present = exists().where(table.c.run_id == t.runs.c.id, table.c.key == node.field.key)
    if node.op == "is null":
        return not_(present)
    if node.op == "is not null":
        return present
    value, op = node.value, node.op
    column = table.c.value
    if node.field.entity == "metrics":
        values = value if isinstance(value, tuple) else (value,)
        if op in TEXT_MATCH or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                       for v in values):
            raise _NotANumber
    elif isinstance(value, float) and op in ("<", "<=", ">", ">="):
        column = _numeric_text(column, dialect)
    elif isinstance(value, (float, bool)):
        value = _text_of(value)
    elif isinstance(value, tuple):
        value = tuple(_text_of(v) for v in value)
    return present.where(_apply(column, op, value))


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compile_query(query: str, dialect: str) -> ColumnElement[bool]:
    """Compile ``query`` to a WHERE clause over ``runs`` for the given SQL dialect."""

    def build(node: Any) -> ColumnElement[bool]:
        if isinstance(node, BoolOp):
            parts = [build(p) for p in node.parts]
            return {"and": and_, "or": or_}[node.op](*parts) if node.op != "not" \
                else not_(parts[0])
        if node.field.entity == "attributes":
            column = ATTRIBUTES[node.field.key]
            if node.op == "is null":
                return column.is_(None)
            if node.op == "is not null":
                return column.is_not(None)
            return _apply(column, node.op, node.value)
        try:
            return _key_value_condition(node, dialect)
        except _NotANumber:
            raise QuerySyntaxError(query, node.field.pos,
                                   f"metrics.{node.field.key} is a number: compare it with a "
                                   "number (=, !=, <, <=, >, >=, in)") from None

    tree = parse(query)
    return true() if tree is None else build(tree)


@dataclass(frozen=True)
class OrderTerm:
    """One ORDER BY term: what to sort on, which way, and whether NULLs (absent) go last."""

    column: Any
    descending: bool = False
    nulls_last: bool = False

    def on(self, column: Any) -> Any:
        """This term's direction and NULL placement, applied to ``column``."""
        term = column.desc() if self.descending else column.asc()
        return term.nulls_last() if self.nulls_last else term


def order_terms(order_by: list[str] | str | None, dialect: str) -> list[OrderTerm]:
    """The terms of :func:`order_clauses`, for callers that sort on them in two steps."""
    items = [order_by] if isinstance(order_by, str) else list(order_by or [])
    terms = []
    for item in items:
        words = item.strip().rsplit(None, 1)
        direction = "asc"
        if len(words) == 2 and words[1].lower() in ("asc", "desc"):
            item, direction = words[0], words[1].lower()
        parser = _Parser(item)
        field = parser.field()
        if parser.peek() is not None:
            raise parser.fail(f"unexpected {parser.peek().text!r} in order_by: write "  # type: ignore[union-attr]
                              "'FIELD' or 'FIELD asc|desc'", parser.peek())
        if field.entity == "attributes":
            column = ATTRIBUTES[field.key]
        else:
            table = {"metrics": t.latest_metrics, "params": t.params,
                     "tags": t.tags}[field.entity]
            column = (select(table.c.value)
                      .where(table.c.run_id == t.runs.c.id, table.c.key == field.key)
                      .scalar_subquery())
        terms.append(OrderTerm(column, direction == "desc", nulls_last=True))
    return terms + [OrderTerm(t.runs.c.start_time, descending=True), OrderTerm(t.runs.c.id)]


def order_clauses(order_by: list[str] | str | None, dialect: str) -> list[Any]:
    """ORDER BY terms from strings like ``"metrics.f1 desc"``; newest runs first by default."""
    return [term.on(term.column) for term in order_terms(order_by, dialect)]
