"""What a step printed and logged, kept per thread so that concurrent steps never mix.

While any step runs, ``sys.stdout``/``sys.stderr`` are proxies and the root logger has one
more handler; both send a capturing thread's output to that thread's buffer and everything
else where it went before. A program whose root logger has no handler keeps its behaviour:
warnings from anywhere still reach stderr the way Python's last-resort handler prints them.

>>> import logging
>>> with capture() as logs:
...     print("training")
...     logging.getLogger("prodml.example").warning("slow")
>>> print(logs.text(), end="")
training
WARNING prodml.example: slow
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

MAX_CHARS = 1_000_000  # per step; the end is kept (where the error usually is)

_local = threading.local()
_lock = threading.Lock()
_active = 0
_saved: dict[str, Any] = {}


class Logs:
    """The text one step wrote, in order."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.cut = False

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > 2 * MAX_CHARS:  # a chatty step holds at most ~2 MB, not all it said
            tail = "".join(self.parts)[-MAX_CHARS:]
            self.parts, self.size, self.cut = [tail], len(tail), True

    def text(self) -> str:
        joined = "".join(self.parts)
        if self.cut or len(joined) > MAX_CHARS:
            return "[... earlier output cut ...]\n" + joined[-MAX_CHARS:]
        return joined


def _buffer() -> Logs | None:
    return getattr(_local, "logs", None)


class _Stream:
    """A stand-in for stdout/stderr that routes a capturing thread's writes."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        logs = _buffer()
        if logs is None:
            return self.original.write(text)
        logs.write(text)
        return len(text)

    def flush(self) -> None:
        if _buffer() is None:
            self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class _Handler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        logs = _buffer()
        if logs is not None:  # a step's record: kept once, in its log (as its prints are)
            logs.write(self.format(record) + "\n")
            return
        # Python prints WARNING and above through its last-resort handler when no handler
        # is configured; ours must not silence that for the threads it does not capture.
        last = logging.lastResort
        if last is not None and record.levelno >= last.level and _alone(record.name):
            last.handle(record)


def _alone(name: str) -> bool:
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(not isinstance(h, _Handler) for h in logger.handlers):
            return False
        if not logger.propagate:
            break
        logger = logger.parent  # type: ignore[assignment]
    return True


def _install() -> None:
    global _active
    with _lock:
        _active += 1
        if _active > 1:
            return
        root = logging.getLogger()
        _saved.update(stdout=sys.stdout, stderr=sys.stderr, level=root.level,
                      handler=_Handler())
        sys.stdout = _Stream(sys.stdout)  # type: ignore[assignment]
        sys.stderr = _Stream(sys.stderr)  # type: ignore[assignment]
        root.addHandler(_saved["handler"])
        # INFO records reach the step's log, unless the program configured handlers of its own
        # (then its level choice stands).
        if root.level > logging.INFO and all(isinstance(h, _Handler) for h in root.handlers):
            root.setLevel(logging.INFO)


def _uninstall() -> None:
    global _active
    with _lock:
        _active -= 1
        if _active > 0:
            return
        root = logging.getLogger()
        root.removeHandler(_saved["handler"])
        if root.level == logging.INFO and _saved["level"] != logging.INFO:
            root.setLevel(_saved["level"])
        if isinstance(sys.stdout, _Stream):
            sys.stdout = _saved["stdout"]
        if isinstance(sys.stderr, _Stream):
            sys.stderr = _saved["stderr"]
        _saved.clear()


@contextmanager
def capture() -> Iterator[Logs]:
    """Collect this thread's prints and log records until the block ends."""
    logs = Logs()
    _install()
    previous = _buffer()
    _local.logs = logs
    try:
        yield logs
    finally:
        _local.logs = previous
        _uninstall()
