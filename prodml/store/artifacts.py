"""Content-addressed artifact storage on any fsspec location.

A blob lives at ``<root>/sha256/<first two hex>/<digest>``. The digest is computed while the
bytes are written and checked again on every read, so a file changed behind prodml's back is
refused before anything deserializes it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import fsspec

from prodml.errors import ArtifactIntegrityError, NotFoundError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    """Where a blob is and what it must hash to."""

    sha256: str
    uri: str
    size: int


class ArtifactStore:
    """Put and get blobs by SHA-256.

    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> blob = store.put_bytes(b"hello")
    >>> blob.sha256[:12], blob.size
    ('2cf24dba5fb0', 5)
    >>> store.get_bytes(blob.sha256)
    b'hello'
    """

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.location)
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, sha256: str) -> str:
        return f"{self.root}/sha256/{sha256[:2]}/{sha256}"

    def uri(self, sha256: str) -> str:
        path = self._path(sha256)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    def put_bytes(self, data: bytes) -> Blob:
        sha = hashlib.sha256(data).hexdigest()
        path = self._path(sha)
        if not self.fs.exists(path):
            self._atomic_write(path, lambda out: out.write(data))
        return Blob(sha, self.uri(sha), len(data))

    def put_file(self, source: str | os.PathLike[str]) -> Blob:
        """Copy a local file in, hashing it on the way (one read of the source)."""
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(delete=False) as tmp, open(source, "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
        try:
            sha = digest.hexdigest()
            path = self._path(sha)
            if not self.fs.exists(path):
                self._atomic_write(path, lambda out: _copy_from(tmp.name, out))
        finally:
            os.unlink(tmp.name)
        return Blob(sha, self.uri(sha), size)

    def _atomic_write(self, path: str, write) -> None:  # type: ignore[no-untyped-def]
        # Write beside the target and rename, so a reader never sees half a blob.
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        with self.fs.open(partial, "wb") as out:
            write(out)
        try:
            self.fs.mv(partial, path)
        except FileExistsError:  # another writer stored the same bytes first
            self.fs.rm(partial)

    def get_bytes(self, sha256: str) -> bytes:
        """The blob's bytes, verified against ``sha256``."""
        path = self._path(sha256)
        try:
            with self.fs.open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise NotFoundError("artifact", self.uri(sha256), "its file is missing from the "
                                f"artifact store {self.location}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactIntegrityError(self.uri(sha256), sha256, actual)
        return data

    def download(self, sha256: str, destination: str | os.PathLike[str]) -> Path:
        """Write the verified blob to a local file and return its path."""
        data = self.get_bytes(sha256)
        dest = Path(destination)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return dest


def _copy_from(local_path: str, out: BinaryIO) -> None:
    with open(local_path, "rb") as src:
        shutil.copyfileobj(src, out, CHUNK)
