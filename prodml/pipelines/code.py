"""A step's code digest: what caching compares to know the code did not change.

The digest covers the function's qualified name and its source text (decorators included,
indentation removed), or its bytecode and constants when the source cannot be read (a
function typed into a REPL). It also covers the project's own helpers the step reaches by
name: functions and classes it names as globals (``clean(x)``) or as attributes of a
module it names (``helpers.clean(x)``), and theirs in turn, so editing a helper re-runs
the step. Installed packages (site-packages, the standard library) are not followed, nor
prodml itself unless the step is one of prodml's: their versions belong to the environment.
A helper reached another way (``getattr``, a method of an object passed in) is not seen:
a change there needs ``--no-cache`` or ``@pm.step(cache=False)``.

>>> def f(x):
...     return x + 1
>>> def g(x):
...     return x + 2
>>> len(code_digest(f)), code_digest(f) == code_digest(g)
(64, False)
>>> function_ref(f)
'prodml.pipelines.code:f'
"""

from __future__ import annotations

import hashlib
import inspect
import sysconfig
import textwrap
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from prodml.pipelines.step import Step

# Bump when what a cached output means changes (serialization formats, key layout).
CACHE_VERSION = "1"

# function -> (its code object when digested, digest); weak, so a redefined function that
# reuses a freed address never finds a stale entry
_digests: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()


MAX_HELPERS = 200  # a bound on the walk through a large code base

_ENVIRONMENT = tuple(sorted({sysconfig.get_paths()[key] for key in
                             ("stdlib", "platstdlib", "purelib", "platlib")}))


def code_digest(function: Callable[..., Any]) -> str:
    """SHA-256 of the function's name and source and its helpers' (see the module
    docstring); a function without helpers of the project keeps its own digest."""
    function = _unwrap(function)
    own = _own_digest(function)
    helpers = sorted(f"{function_ref(h)}:{_own_digest(h)}" for h in _helpers(function))
    if not helpers:
        return own
    digest = hashlib.sha256(own.encode())
    for line in helpers:
        digest.update(b"\n" + line.encode())
    return digest.hexdigest()


def _unwrap(function: Any) -> Any:
    if isinstance(function, Step):  # a step another step calls: its function
        function = function.function
    return inspect.unwrap(function) if hasattr(function, "__wrapped__") else function


def _helpers(function: Any) -> list[Any]:
    """The project's functions and classes ``function`` reaches by name, transitively."""
    if not isinstance(function, types.FunctionType):
        return []
    inside_prodml = function.__module__.split(".", 1)[0] == "prodml"
    seen: dict[int, Any] = {id(function): function}
    queue = [function]
    while queue and len(seen) <= MAX_HELPERS:
        current = queue.pop()
        names = _names(current.__code__)
        scope = current.__globals__
        for name in names:
            value = scope.get(name)
            if value is None:
                continue
            if isinstance(value, types.ModuleType):
                space = value.__dict__
                found = [space[attr] for attr in names if attr in space]
            else:
                found = [value]
            for candidate in found:
                candidate = _unwrap(candidate)
                if id(candidate) in seen or not _is_project_code(candidate, inside_prodml):
                    continue
                seen[id(candidate)] = candidate
                if isinstance(candidate, types.FunctionType):
                    queue.append(candidate)
    return [h for key, h in seen.items() if key != id(function)]


def _names(code: types.CodeType) -> frozenset[str]:
    """The global and attribute names a code object (and the code nested in it) uses."""
    names = _code_names.get(code)
    if names is None:
        names = _code_names[code] = frozenset(_global_names(code))
    return names


_code_names: weakref.WeakKeyDictionary[types.CodeType, frozenset[str]] = \
    weakref.WeakKeyDictionary()


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:  # nested functions, lambdas, comprehensions
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _is_project_code(value: Any, inside_prodml: bool) -> bool:
    if not isinstance(value, (types.FunctionType, type)):
        return False
    module = getattr(value, "__module__", None) or ""
    if module.split(".", 1)[0] == "prodml" and not inside_prodml:
        return False
    try:
        return _in_project[value]
    except (KeyError, TypeError):
        pass
    try:
        path = inspect.getsourcefile(value)
    except TypeError:  # a builtin, a class defined in C or typed into a REPL
        path = None
    found = path is not None and not path.startswith(_ENVIRONMENT)
    try:
        _in_project[value] = found
    except TypeError:
        pass
    return found


# function or class -> whether its source is the project's (a file lookup, asked once)
_in_project: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _own_digest(function: Any) -> str:
    """SHA-256 of the function's (or class's) qualified name and source."""
    code = getattr(function, "__code__", None)
    try:
        cached = _digests.get(function)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached[0] is code:
        return cached[1]
    digest = hashlib.sha256(f"prodml-step:{CACHE_VERSION}\n".encode())
    digest.update(getattr(function, "__qualname__", repr(function)).encode() + b"\n")
    try:
        digest.update(textwrap.dedent(inspect.getsource(function)).encode())
    except (OSError, TypeError):
        if code is None:
            digest.update(repr(function).encode())
        else:
            digest.update(code.co_code)
            digest.update(repr(code.co_consts).encode())
    value = digest.hexdigest()
    try:
        _digests[function] = (code, value)
    except TypeError:
        pass
    return value


def function_ref(function: Callable[..., Any]) -> str:
    """``module:qualname`` of a function (what ``executions.function`` records)."""
    return f"{getattr(function, '__module__', '?')}:" \
           f"{getattr(function, '__qualname__', repr(function))}"
