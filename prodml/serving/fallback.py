"""Fallback rules: what answers when an endpoint's model is paused or failing.

A rule is either ``"module:function"`` (a Python callable taking one record, a dict) or a
small expression over the record's fields, such as ``"1 if salary > 100000 else 0"``. The
expression language is Python's, restricted to constants, field names, arithmetic,
comparisons, ``and``/``or``/``not``, ``x if c else y`` and a few pure functions: no
attribute access, no imports, no calls to anything else, so a rule stored in the database
cannot run arbitrary code.

>>> rule = compile_rule("'approve' if salary > 50000 and age >= 21 else 'review'")
>>> rule({"salary": 60000, "age": 30}), rule({"salary": 20000, "age": 30})
('approve', 'review')
>>> compile_rule("__import__('os')")
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: fallback="__import__('os')": calls only abs, float, int, len, max, min, round, str (not __import__)
"""

from __future__ import annotations

import ast
import importlib
import operator
from functools import lru_cache
from typing import Any, Callable

from prodml.errors import InvalidInputError

Rule = Callable[[dict[str, Any]], Any]

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "float": float, "int": int, "len": len, "max": max, "min": min,
    "round": round, "str": str}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
            ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
            ast.Is: operator.is_, ast.IsNot: operator.is_not}
_UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}


class FallbackError(Exception):
    """A rule could not answer a record (a field it needs is missing, a type is wrong)."""


@lru_cache(maxsize=256)
def compile_rule(rule: str) -> Rule:
    """The rule as a callable over one record; refuses anything outside the language."""
    if not isinstance(rule, str) or not rule.strip():
        raise InvalidInputError("fallback", rule, "must be an expression or 'module:function'")
    text = rule.strip()
    if _looks_like_import_path(text):
        return _import_callable(text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise InvalidInputError("fallback", rule, f"is not a valid expression ({exc.msg})"
                                ) from None
    _check(tree.body, rule)
    body = tree.body

    def answer(record: dict[str, Any]) -> Any:
        try:
            return _eval(body, record)
        except FallbackError:
            raise
        except Exception as exc:
            raise FallbackError(f"fallback rule failed: {type(exc).__name__}: {exc}") from None
    return answer


def _looks_like_import_path(text: str) -> bool:
    module, sep, name = text.partition(":")
    return bool(sep) and all(part.isidentifier() for part in module.split(".")) \
        and name.isidentifier()


def _import_callable(path: str) -> Rule:
    module, _, name = path.partition(":")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError("fallback", path, f"cannot be imported ({exc})") from None
    if not callable(target):
        raise InvalidInputError("fallback", path, "must name a callable")
    return target  # type: ignore[no-any-return]


def _check(node: ast.AST, rule: str) -> None:
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.UnaryOp,
               ast.Compare, ast.IfExp, ast.Name, ast.Load, ast.Constant, ast.Call, ast.Tuple,
               ast.List, *_BINARY, *_COMPARE, *_UNARY)
    for sub in ast.walk(node):
        if not isinstance(sub, allowed):
            raise InvalidInputError("fallback", rule,
                                    f"may not use {type(sub).__name__} (constants, field names, "
                                    "arithmetic, comparisons, and/or/not, if-else only)")
        if isinstance(sub, ast.Call):
            name = sub.func.id if isinstance(sub.func, ast.Name) else None
            if name not in _FUNCTIONS or sub.keywords:
                raise InvalidInputError("fallback", rule,
                                        f"calls only {', '.join(sorted(_FUNCTIONS))} "
                                        f"(not {name or ast.unparse(sub.func)})")


def _eval(node: ast.AST, record: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in record:
            raise FallbackError(f"fallback rule needs field {node.id!r}, which the request "
                                "does not have")
        return record[node.id]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _eval(value, record)
                if not result:
                    return result
            return result
        for value in node.values:
            result = _eval(value, record)
            if result:
                return result
        return result
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, record), _eval(node.right, record))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, record))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, record)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, record)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, record) else node.orelse, record)
    if isinstance(node, ast.Call):
        return _FUNCTIONS[node.func.id](*(_eval(a, record) for a in node.args))  # type: ignore[attr-defined]
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(e, record) for e in node.elts)
    raise FallbackError(f"unsupported expression {ast.dump(node)}")  # pragma: no cover
