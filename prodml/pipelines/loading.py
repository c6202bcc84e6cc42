"""Finding a pipeline again: in a Python file (``file.py[:name]``) or a module (``module:name``).

>>> load_pipeline("no_such_file.py")
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: target='no_such_file.py': no such file
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from prodml.errors import InvalidInputError
from prodml.pipelines.pipeline import Pipeline


def load_pipeline(target: str) -> Pipeline:
    """The pipeline ``target`` names; the name may be left out when there is exactly one."""
    location, _, name = target.rpartition(":") if _has_name(target) else (target, "", "")
    if location.endswith(".py") or Path(location).suffix == ".py":
        module = _load_file(location, target)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as error:
            raise InvalidInputError("target", target, f"cannot import {location}: {error}"
                                    ) from None
    found = {value.name: value for value in vars(module).values()
             if isinstance(value, Pipeline)}
    if name:
        value = getattr(module, name, None)
        if isinstance(value, Pipeline):
            return value
        if name in found:
            return found[name]
        raise InvalidInputError("target", target, f"{location} has no pipeline {name!r} "
                                f"(pipelines there: {', '.join(sorted(found)) or 'none'})")
    if len(found) != 1:
        raise InvalidInputError("target", target,
                                f"{location} defines {len(found)} pipelines "
                                f"({', '.join(sorted(found)) or 'none'}): name one as "
                                f"{location}:NAME")
    return next(iter(found.values()))


def _has_name(target: str) -> bool:
    head, sep, tail = target.rpartition(":")
    # "C:\\x.py" or a bare file name has no pipeline name after a colon
    return bool(sep) and bool(tail) and "/" not in tail and "\\" not in tail and bool(head)


def _load_file(location: str, target: str):  # type: ignore[no-untyped-def]
    path = Path(location).expanduser().resolve()
    if not path.is_file():
        raise InvalidInputError("target", target, "no such file")
    # The same name in every process (Python's str hash is salted per process), so the
    # function references and code digests recorded for its steps are stable.
    module_name = f"prodml_pipeline_{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError("target", target, "not a Python file")
    module = importlib.util.module_from_spec(spec)
    module.__prodml_loaded_from_path__ = True  # type: ignore[attr-defined]
    sys.modules[module_name] = module  # pickling by reference (Dask) finds it
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # the file's own imports of its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's file: one line, not a traceback
        sys.modules.pop(module_name, None)
        raise InvalidInputError("target", target,
                                f"loading it raised {type(error).__name__}: {error}") from None
    return module
