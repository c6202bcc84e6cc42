"""``Source``: where a pipeline's data comes from, with a digest of what is there now.

A file (or a folder of files, or any fsspec URL) is digested by its bytes; a SQL query by its
text and the connection it runs on (password hidden). The digest enters the cache key of
the step that receives the source, and the source is recorded as a "Source" artifact: the
start of forward lineage when the data there turns out to be wrong.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "loans.csv"
>>> _ = path.write_text("age,income\\n30,1000\\n")
>>> source = Source(str(path))
>>> source.kind, len(source.digest())
('file', 64)
>>> query = Source("SELECT * FROM loans", connection="sqlite:///loans.db")
>>> query.kind, query.uri
('query', 'sqlite:///loans.db')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodml.errors import InvalidInputError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """A file, folder or URL (``Source("data/loans.csv")``) or a query on a connection
    (``Source("SELECT ...", connection="postgresql+psycopg://...")``)."""

    location: str
    connection: str | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.location, str) or not self.location.strip():
            raise InvalidInputError("source", self.location,
                                    "must be a path, a URL or a SQL query")

    @property
    def kind(self) -> str:
        return "query" if self.connection is not None else "file"

    @property
    def uri(self) -> str:
        """The file's absolute path or URL; the connection (without password) of a query."""
        if self.connection is not None:
            return _hide_password(self.connection)
        if "://" in self.location:
            return self.location
        return str(Path(self.location).expanduser().resolve())

    @property
    def query(self) -> str | None:
        return self.location if self.connection is not None else None

    def digest(self, store: Any = None) -> str:
        """SHA-256 of the bytes there now (a query: of its text and connection).

        ``store`` is the pipeline's (a source that lives in the store uses it; a file or a
        query does not)."""
        if self.connection is not None:
            text = f"query\n{_hide_password(self.connection)}\n{self.location.strip()}"
            return hashlib.sha256(text.encode()).hexdigest()
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.uri)
        if not fs.exists(root):
            raise InvalidInputError("source", self.location, "no such file or folder (a SQL "
                                    "query needs connection=...)")
        digest = hashlib.sha256()
        if fs.isdir(root):
            for path in sorted(fs.find(root)):
                digest.update(path[len(root):].lstrip("/").encode() + b"\0")
                _update(digest, fs, path)
        else:
            _update(digest, fs, root)
        return digest.hexdigest()

    def properties(self) -> dict[str, Any]:
        """What the Source artifact records besides its digest."""
        facts: dict[str, Any] = {"kind": self.kind}
        if self.connection is not None:
            facts["query"] = self.location.strip()
            facts["connection"] = _hide_password(self.connection)
        return facts

    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.connection is not None:
            return " ".join(self.location.split())[:80]
        return self.location.rstrip("/").rsplit("/", 1)[-1]

    def __fspath__(self) -> str:
        # A file source can be handed straight to pandas, Polars or open().
        if self.connection is not None:
            raise TypeError("a query source has no path")
        return self.uri


def _update(digest: Any, fs: Any, path: str) -> None:
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL: show it as given
        return url
