"""A step's code digest: what caching compares to know the code did not change.

The digest covers the function's qualified name and its source text (decorators included,
indentation removed), or its bytecode and constants when the source cannot be read (a
function typed into a REPL). It does not follow helpers the function calls: a change there
needs ``--no-cache`` or ``@pm.step(cache=False)``, as in TFX and ZenML.

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
import textwrap
import weakref
from collections.abc import Callable
from typing import Any

# Bump when what a cached output means changes (serialization formats, key layout).
CACHE_VERSION = "1"

# function -> (its code object when digested, digest); weak, so a redefined function that
# reuses a freed address never finds a stale entry
_digests: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()


def code_digest(function: Callable[..., Any]) -> str:
    """SHA-256 of the function's name and source (see the module docstring)."""
    function = inspect.unwrap(function) if hasattr(function, "__wrapped__") else function
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
