"""The software a run ran on: Python, platform, host and key package versions.

Versions come from installed package metadata, so nothing is imported to read them.
"""

from __future__ import annotations

import functools
import getpass
import platform
import socket
from importlib import metadata

KEY_PACKAGES = ("prodml", "numpy", "scipy", "pandas", "polars", "pyarrow", "scikit-learn",
                "lightgbm", "xgboost", "catboost", "onnxruntime", "torch", "river", "skops")


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Versions of the installed packages among ``names``.

    >>> "numpy" in package_versions(("numpy", "not-a-real-package"))
    True
    """
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def _environment() -> dict[str, object]:
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "packages": package_versions()}


def environment() -> dict[str, object]:
    """Python, platform and package versions; read once per process (they do not change)."""
    found = _environment()
    return {**found, "packages": dict(found["packages"])}  # type: ignore[call-overload]


def host() -> str:
    return socket.gethostname()


def user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
