"""Reading a spec that may be a mapping, YAML text or a YAML file (gates, audit checks).

A leaf like :mod:`prodml.errors`: the pure-computation packages may import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from prodml.errors import InvalidInputError


def read_spec(spec: Any, what: str) -> tuple[Any, str]:
    """Return ``(value, source)``: YAML text and ``.yaml``/``.yml`` paths parsed, anything
    else as given. ``source`` names where it came from, for error messages.

    >>> read_spec("conditions: []", "gate spec")
    ({'conditions': []}, 'gate spec')
    >>> read_spec({"a": 1}, "checks")
    ({'a': 1}, 'checks')
    """
    if not isinstance(spec, (str, os.PathLike)):
        return spec, what
    source, text = what, str(spec)
    looks_like_path = isinstance(spec, os.PathLike) or (
        len(text) < 1024 and "\n" not in text and Path(text).suffix in (".yaml", ".yml"))
    if looks_like_path:
        path = Path(spec)
        if not path.exists():
            raise InvalidInputError(what, str(path), "file does not exist")
        source, text = str(path), path.read_text()
    try:
        return yaml.safe_load(text), source
    except yaml.YAMLError as exc:
        raise InvalidInputError(source, "YAML", f"is not valid YAML: {exc}") from None
