"""The HTML reports the dashboard lists and serves: files in the store's reports folder.

Drift, evaluation and monitoring reports are written beside the artifacts folder
(``<artifacts>/../reports``). Only ``.html`` files directly in that folder are reachable: a
name with a path in it, a hidden file, or a link leading outside the folder is not found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prodml.store import Store


def reports_folder(store: Store) -> Path | None:
    """The store's reports folder (beside the artifacts), when the artifacts are local."""
    location = store.artifacts.location
    if "://" in location and not location.startswith("file://"):
        return None
    return Path(location.removeprefix("file://")).parent / "reports"


def list_reports(store: Store) -> list[dict[str, Any]]:
    """The HTML reports in the reports folder, newest first."""
    folder = reports_folder(store)
    if folder is None or not folder.is_dir():
        return []
    found = [(path, path.stat()) for path in folder.glob("*.html")
             if report_path(store, path.name) is not None]
    return [{"name": path.name, "size": stat.st_size, "modified": int(stat.st_mtime * 1000)}
            for path, stat in sorted(found, key=lambda item: (-item[1].st_mtime,
                                                              item[0].name))]


def report_path(store: Store, name: str) -> Path | None:
    """The report called ``name``: a file directly in the reports folder, nothing else."""
    folder = reports_folder(store)
    if folder is None or "/" in name or "\\" in name or name.startswith(".") \
            or not name.endswith(".html"):
        return None
    path = (folder / name).resolve()
    if path.parent != folder.resolve() or not path.is_file():
        return None
    return path
