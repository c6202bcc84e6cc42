"""Printing results: Rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

import orjson
from rich.console import Console

console = Console(log_path=False)
errors = Console(stderr=True)


def print_json(value: Any) -> None:
    """Write ``value`` as JSON on stdout (dataclasses via their ``to_dict``)."""
    sys.stdout.write(orjson.dumps(value, default=_default,
                                  option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                                  ).decode() + "\n")


def _default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def short(run_id: str) -> str:
    return run_id[:8]
