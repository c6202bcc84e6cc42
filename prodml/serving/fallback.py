"""Fallback rules: what answers when an endpoint's model is paused or failing.

A rule is a small expression over the record's fields, such as
``"1 if salary > 100000 else 0"``, or ``"module:function"`` (a Python callable taking one
record, a dict) **named in the server's allow-list** (``PRODML_FALLBACK_ALLOW``, ``prodml
serve --allow-fallback``). The allow-list is the only way to make the server import code: a
rule stored through the API or written straight into the store that is not on it is refused
when it is stored and again when it is compiled for serving, before anything is imported.

The expression language is Python's, restricted to constants, field names, arithmetic,
comparisons, ``and``/``or``/``not``, ``x if c else y`` and a few pure functions: no
attribute access, no imports, no calls to anything else. Its cost is bounded: at most
``MAX_CHARS`` characters, ``MAX_NODES`` syntax nodes nested ``MAX_DEPTH`` deep; ``a ** b``
only for ``|b| <= 64`` and an integer result of at most ``MAX_INT_BITS`` bits; a repeated
string or tuple of at most ``MAX_ITEMS`` items; ``%`` on numbers only (no ``'%0999999999d'``
formatting); ``round(x, n)`` for ``|n| <= 64``. Parts without fields are evaluated when the
rule is compiled, so ``9 ** 9 ** 8`` is refused at deploy time. Serving evaluates rules off
the event loop (:func:`answer_records`) within a time limit per record.

>>> rule = compile_rule("'approve' if salary > 50000 and age >= 21 else 'review'")
>>> rule({"salary": 60000, "age": 30}), rule({"salary": 20000, "age": 30})
('approve', 'review')
>>> compile_rule("__import__('os')")
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: fallback="__import__('os')": calls only abs, float, int, len, max, min, round, str (not __import__)
>>> compile_rule("subprocess:run", allow=())
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: fallback='subprocess:run': is not in the server's allow-list (PRODML_FALLBACK_ALLOW or prodml serve --allow-fallback; it is empty)
>>> compile_rule("9 ** 9 ** 8")
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: fallback='9 ** 9 ** 8': is too costly: an exponent must be within ±64 (got 43046721)
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import operator
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Callable, Iterable

from prodml.errors import InvalidInputError

MAX_CHARS = 1_000
MAX_NODES = 300
MAX_DEPTH = 32
MAX_EXPONENT = 64
MAX_INT_BITS = 4_096
MAX_ITEMS = 100_000
_COMPILE_BUDGET_S = 1.0  # folding bounded operations takes ~ms; this only guards against surprises

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
_CONSTANT_NAMES = {"True": True, "False": False, "None": None}


class FallbackError(Exception):
    """A rule could not answer a record (a field it needs is missing, a type is wrong, a
    bound or the time limit was hit)."""


class _TooCostly(FallbackError):
    """An operation would take more memory or time than a rule may."""


class _OutOfTime(_TooCostly):
    """The rule ran past its time limit."""


class Rule:
    """A compiled rule: ``rule(record)`` answers one record or raises :class:`FallbackError`."""

    text: str

    def __call__(self, record: dict[str, Any], deadline: float | None = None) -> Any:
        raise NotImplementedError


class ExpressionRule(Rule):
    def __init__(self, text: str, body: ast.expr) -> None:
        self.text, self.body = text, body

    def __call__(self, record: dict[str, Any], deadline: float | None = None) -> Any:
        try:
            return _eval(self.body, record, deadline if deadline is not None else float("inf"))
        except FallbackError:
            raise
        except Exception as exc:
            raise FallbackError(f"fallback rule failed: {type(exc).__name__}: {exc}") from None


class ImportedRule(Rule):
    """An allow-listed ``module:function``; its own code decides its cost, so the time limit
    of :func:`answer_records` is what bounds it."""

    def __init__(self, text: str, target: Callable[[dict[str, Any]], Any]) -> None:
        self.text, self.target = text, target

    def __call__(self, record: dict[str, Any], deadline: float | None = None) -> Any:
        try:
            return self.target(record)
        except FallbackError:
            raise
        except Exception as exc:
            raise FallbackError(f"fallback rule {self.text} failed: "
                                f"{type(exc).__name__}: {exc}") from None


def compile_rule(rule: str, allow: Iterable[str] | None = None) -> Rule:
    """The rule as a callable over one record; refuses anything outside the language, and
    any ``module:function`` not in ``allow`` (default: this process's settings,
    ``PRODML_FALLBACK_ALLOW``)."""
    if not isinstance(rule, str) or not rule.strip():
        raise InvalidInputError("fallback", rule, "must be an expression or 'module:function'")
    if allow is None:
        from prodml.config import Settings
        allow = Settings.from_env().fallback_allow
    return _compile(rule, tuple(allow))


@lru_cache(maxsize=256)
def _compile(rule: str, allow: tuple[str, ...]) -> Rule:
    if len(rule) > MAX_CHARS:
        raise InvalidInputError("fallback", rule[:60] + "…",
                                f"must be at most {MAX_CHARS:,} characters (has {len(rule):,})")
    text = rule.strip()
    if _looks_like_import_path(text):
        return _import_allowed(text, allow)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise InvalidInputError("fallback", rule, f"is not a valid expression ({exc.msg})"
                                ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise InvalidInputError("fallback", rule, f"is not a valid expression ({exc})"
                                ) from None
    _check(tree.body, rule)
    _fold(tree.body, rule, time.perf_counter() + _COMPILE_BUDGET_S)
    return ExpressionRule(text, tree.body)


def _looks_like_import_path(text: str) -> bool:
    module, sep, name = text.partition(":")
    return bool(sep) and all(part.isidentifier() for part in module.split(".")) \
        and name.isidentifier()


def allowed(path: str, allow: Iterable[str]) -> bool:
    """Whether ``module:function`` is on the allow-list (``module:*`` covers the module's
    public names; the target must then be defined there, see :func:`_import_allowed`).

    >>> allowed("rules:approve", ["rules:*"]), allowed("rules:_x", ["rules:*"])
    (True, False)
    >>> allowed("rules.sub:approve", ["rules:*"]), allowed("os:system", ["rules:approve"])
    (False, False)
    """
    module, _, name = path.partition(":")
    for entry in allow:
        allowed_module, _, allowed_name = entry.partition(":")
        if allowed_module != module:
            continue
        if allowed_name == name or (allowed_name == "*" and not name.startswith("_")):
            return True
    return False


def _import_allowed(path: str, allow: tuple[str, ...]) -> Rule:
    if not allowed(path, allow):
        listed = ", ".join(allow) if allow else "it is empty"
        raise InvalidInputError("fallback", path, "is not in the server's allow-list "
                                f"(PRODML_FALLBACK_ALLOW or prodml serve --allow-fallback; "
                                f"{listed})")
    module, _, name = path.partition(":")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError("fallback", path, f"cannot be imported ({exc})") from None
    if not callable(target):
        raise InvalidInputError("fallback", path, "must name a callable")
    if path not in allow and getattr(target, "__module__", None) != module:
        # "module:*" allows what the module defines, not what it imported (os.system...)
        raise InvalidInputError("fallback", path, f"must be defined in {module} (it comes "
                                f"from {getattr(target, '__module__', '?')}); allow it by name")
    return ImportedRule(path, target)


def _check(body: ast.expr, rule: str) -> None:
    allowed_nodes = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.UnaryOp,
                     ast.Compare, ast.IfExp, ast.Name, ast.Load, ast.Constant, ast.Call,
                     ast.Tuple, ast.List, *_BINARY, *_COMPARE, *_UNARY)
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(body, 1)]
    while stack:
        sub, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidInputError("fallback", rule, f"is too large: at most {MAX_NODES} "
                                    "operations, names and constants")
        if depth > MAX_DEPTH:
            raise InvalidInputError("fallback", rule, f"is nested too deep (at most "
                                    f"{MAX_DEPTH} levels)")
        if not isinstance(sub, allowed_nodes):
            raise InvalidInputError("fallback", rule,
                                    f"may not use {type(sub).__name__} (constants, field names, "
                                    "arithmetic, comparisons, and/or/not, if-else only)")
        if isinstance(sub, ast.Call):
            name = sub.func.id if isinstance(sub.func, ast.Name) else None
            if name not in _FUNCTIONS or sub.keywords:
                raise InvalidInputError("fallback", rule,
                                        f"calls only {', '.join(sorted(_FUNCTIONS))} "
                                        f"(not {name or ast.unparse(sub.func)})")
            children: Iterable[ast.AST] = sub.args  # the function's name is checked above
        else:
            children = ast.iter_child_nodes(sub)
        stack.extend((child, depth + 1) for child in children)


def _fold(node: ast.expr, rule: str, deadline: float) -> None:
    """Evaluate the parts that read no field now: a bomb among them (``9 ** 9 ** 8``,
    ``'x' * 10 ** 9``) is refused at deploy time rather than met by the first caller."""
    if not _reads_fields(node):
        try:
            _eval(node, {}, deadline)
        except _TooCostly as exc:
            raise InvalidInputError("fallback", rule, f"is too costly: {exc}") from None
        except Exception:  # e.g. 1 / 0 in a branch that may never be taken: not our call
            pass
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr) and not (isinstance(node, ast.Call)
                                                and child is node.func):
            _fold(child, rule, deadline)


def _reads_fields(node: ast.expr) -> bool:
    return any(isinstance(n, ast.Name) and n.id not in _CONSTANT_NAMES
               and not (n.id in _FUNCTIONS and _is_callee(node, n)) for n in ast.walk(node))


def _is_callee(root: ast.AST, name: ast.Name) -> bool:
    return any(isinstance(n, ast.Call) and n.func is name for n in ast.walk(root))


# ---- bounded evaluation ---------------------------------------------------------------------

def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, tuple, list)) else 0


def _pow(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool) \
            and abs(exponent) > MAX_EXPONENT:
        raise _TooCostly(f"an exponent must be within ±{MAX_EXPONENT} (got {exponent!r})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 \
            and base.bit_length() * exponent > MAX_INT_BITS:
        raise _TooCostly(f"an integer power may have at most {MAX_INT_BITS} bits "
                         f"({base.bit_length()}-bit base ** {exponent})")
    return operator.pow(base, exponent)


def _mul(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if _size(seq) and isinstance(times, int) and _size(seq) * max(times, 0) > MAX_ITEMS:
            raise _TooCostly(f"a repeated string or sequence may hold at most "
                             f"{MAX_ITEMS:,} items (asked {_size(seq):,} × {times:,})")
    return operator.mul(left, right)


def _mod(left: Any, right: Any) -> Any:
    if isinstance(left, (str, bytes)):
        raise FallbackError("% is for numbers only in a fallback rule (no string formatting)")
    return operator.mod(left, right)


def _str(*args: Any) -> str:
    # str() of a scalar only: str() of a tuple of long strings is a copy of all of them,
    # gigabytes from a rule of a few characters
    if len(args) == 1 and (args[0] is None or isinstance(args[0], (bool, int, float, str))):
        return _sized(str(args[0]))
    raise FallbackError("str() takes one number, text, bool or None in a fallback rule")


def _sized(value: Any) -> Any:
    """``value``, if it is no larger than a rule's values may be."""
    if _size(value) > MAX_ITEMS:
        raise _TooCostly(f"a value may hold at most {MAX_ITEMS:,} items or characters "
                         f"(this one has {_size(value):,})")
    return value


def _round(*args: Any) -> Any:
    if len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > MAX_EXPONENT:
        raise _TooCostly(f"round's digits must be within ±{MAX_EXPONENT} (got {args[1]!r})")
    return round(*args)


_BOUNDED_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    **_BINARY, ast.Pow: _pow, ast.Mult: _mul, ast.Mod: _mod}
_BOUNDED_FUNCTIONS: dict[str, Callable[..., Any]] = {**_FUNCTIONS, "round": _round,
                                                     "str": _str}


def _eval(node: ast.AST, record: dict[str, Any], deadline: float) -> Any:
    if time.perf_counter() > deadline:
        raise _OutOfTime("the rule ran past its time limit")
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[node.id]
        if node.id not in record:
            raise FallbackError(f"fallback rule needs field {node.id!r}, which the request "
                                "does not have")
        return record[node.id]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _eval(value, record, deadline)
                if not result:
                    return result
            return result
        for value in node.values:
            result = _eval(value, record, deadline)
            if result:
                return result
        return result
    if isinstance(node, ast.BinOp):  # e.g. a + a + a ... of long texts: every result bounded
        return _sized(_BOUNDED_BINARY[type(node.op)](_eval(node.left, record, deadline),
                                                     _eval(node.right, record, deadline)))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, record, deadline))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, record, deadline)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, record, deadline)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, record, deadline) else node.orelse, record,
                     deadline)
    if isinstance(node, ast.Call):
        return _BOUNDED_FUNCTIONS[node.func.id](  # type: ignore[attr-defined]
            *(_eval(a, record, deadline) for a in node.args))
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(e, record, deadline) for e in node.elts)
    raise FallbackError(f"unsupported expression {ast.dump(node)}")  # pragma: no cover


# ---- off the event loop ---------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    # Its own small pool: a rule stuck in an allow-listed function holds one of these
    # threads, never the loop's default executor that the rest of the server shares.
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prodml-fallback")
        return _pool


def _answer_all(rule: Rule, records: list[dict[str, Any]], limit_s: float) -> list[Any]:
    answers = []
    for record in records:
        deadline = time.perf_counter() + limit_s
        answers.append(rule(record, deadline))
        if time.perf_counter() > deadline:
            raise _OutOfTime("the rule ran past its time limit")
    return answers


async def answer_records(rule: Rule, records: list[dict[str, Any]], limit_ms: float
                         ) -> list[Any]:
    """The rule's answers, computed in a worker thread, ``limit_ms`` per record at most.

    The event loop keeps serving meanwhile (health checks, other endpoints); a rule that
    runs past its limit raises :class:`FallbackError`, which the service answers like any
    other failed fallback."""
    limit_s = limit_ms / 1000
    work = asyncio.get_running_loop().run_in_executor(_executor(), _answer_all, rule, records,
                                                      limit_s)
    try:
        return await asyncio.wait_for(work, timeout=limit_s * len(records) + 0.01)
    except (asyncio.TimeoutError, _OutOfTime):
        raise FallbackError(f"fallback rule ran past its time limit ({limit_ms:g} ms a "
                            "record)") from None
    except _TooCostly as exc:
        raise FallbackError(f"fallback rule is too costly: {exc}") from None
