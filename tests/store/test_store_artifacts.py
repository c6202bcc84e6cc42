"""Artifacts are stored by content and verified on every read, before anything deserializes."""

from __future__ import annotations

import hashlib
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import prodml as pm
from prodml.errors import ArtifactIntegrityError, NotFoundError
from prodml.store import ArtifactStore
from prodml.store import tables as t


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "sha256").rglob("*") if p.is_file())


class UnpickleMarker:
    """A model whose unpickling writes a file: the file shows whether it was deserialized."""

    def __init__(self, marker: str, answer: int) -> None:
        self.marker = marker
        self.answer = answer

    def predict(self, X: Any) -> list[int]:
        return [self.answer] * len(X)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text(f"unpickled answer={state['answer']}")
        self.__dict__.update(state)


# -- the artifact store on its own --------------------------------------------------------------

def test_same_bytes_are_stored_once(tmp_path: Path) -> None:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    first = artifacts.put_bytes(b"model bytes")
    second = artifacts.put_bytes(b"model bytes")
    source = tmp_path / "copy.bin"
    source.write_bytes(b"model bytes")
    from_file = artifacts.put_file(source)
    other = artifacts.put_bytes(b"other bytes")

    assert first == second == from_file
    assert first.sha256 == hashlib.sha256(b"model bytes").hexdigest()
    assert first.size == len(b"model bytes")
    assert other.sha256 != first.sha256
    files = blob_files(tmp_path / "artifacts")
    assert [f.name for f in files] == sorted([first.sha256, other.sha256])
    assert files[0].parent.name == files[0].name[:2]
    assert artifacts.get_bytes(first.sha256) == b"model bytes"


def test_concurrent_writers_of_the_same_bytes_leave_one_whole_blob(tmp_path: Path) -> None:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    data = bytes(range(256)) * 8192  # 2 MiB: big enough for writes to overlap
    blobs: list = []
    start = threading.Barrier(8)

    def put() -> None:
        start.wait()
        blobs.append(artifacts.put_bytes(data))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(blobs) == 8 and len(set(blobs)) == 1
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert [f.name for f in files] == [blobs[0].sha256]  # no partial file left behind
    assert artifacts.get_bytes(blobs[0].sha256) == data


def test_a_changed_blob_is_refused_on_read(tmp_path: Path) -> None:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    blob = artifacts.put_bytes(b"the real report")
    Path(blob.uri).write_bytes(b"the fake report")

    with pytest.raises(ArtifactIntegrityError) as caught:
        artifacts.get_bytes(blob.sha256)
    assert blob.sha256 in str(caught.value) and blob.uri in str(caught.value)
    destination = tmp_path / "out" / "report.txt"
    with pytest.raises(ArtifactIntegrityError):
        artifacts.download(blob.sha256, destination)
    assert not destination.exists()


def test_a_missing_blob_is_not_found(tmp_path: Path) -> None:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    blob = artifacts.put_bytes(b"soon gone")
    Path(blob.uri).unlink()
    with pytest.raises(NotFoundError, match="missing"):
        artifacts.get_bytes(blob.sha256)


# -- through runs and the registry, on both databases -------------------------------------------

def test_runs_share_one_blob_for_the_same_bytes(store: pm.Store, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_bytes(b"<p>same</p>")
    with pm.start_run("artifacts", code_dir=tmp_path) as first:
        first.log_bytes("report.html", b"<p>same</p>", media_type="text/html")
        first.log_bytes("other.html", b"<p>different</p>")
    with pm.start_run("artifacts", code_dir=tmp_path) as second:
        (record,) = second.log_artifact(report)

    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.artifacts)).scalar_one() == 2
        links = conn.execute(select(t.run_artifacts.c.run_id, t.run_artifacts.c.path,
                                    t.run_artifacts.c.sha256)).all()
    assert len(links) == 3
    assert {sha for run_id, path, sha in links if path == "report.html"} == {record.sha256}
    assert len(blob_files(tmp_path / "artifacts")) == 2
    assert store.artifacts.get_bytes(record.sha256) == b"<p>same</p>"


def test_a_tampered_model_is_never_deserialized(store: pm.Store, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.txt"
    version = pm.models.register("tamper", UnpickleMarker(str(marker), answer=1))
    assert version.serialization == "pickle"

    # The marker works: an untouched model loads, and loading wrote the file.
    assert pm.models.load("tamper/1").predict([0, 0]) == [1, 1]
    assert marker.read_text() == "unpickled answer=1"
    marker.unlink()

    # Someone swaps the stored file for another valid pickle of the same class.
    blob = Path(version.artifact_uri)
    assert blob.is_file() and blob.read_bytes() != b""
    blob.write_bytes(pickle.dumps(UnpickleMarker(str(marker), answer=666), protocol=5))

    with pytest.raises(ArtifactIntegrityError) as caught:
        pm.models.load("tamper@latest")
    assert version.artifact_sha256 in str(caught.value)
    with pytest.raises(ArtifactIntegrityError):
        pm.models.load_check("tamper/1")
    assert not marker.exists(), "the tampered pickle was deserialized"


def test_registering_the_same_model_twice_stores_one_blob(store: pm.Store,
                                                          tmp_path: Path) -> None:
    model = UnpickleMarker(str(tmp_path / "unused"), answer=3)
    first = pm.models.register("twice", model)
    second = pm.models.register("twice", model)
    assert (first.version, second.version) == (1, 2)
    assert first.artifact_sha256 == second.artifact_sha256
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(t.artifacts)).scalar_one() == 1
    assert len(blob_files(tmp_path / "artifacts")) == 1
