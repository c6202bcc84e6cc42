"""The code a run ran: git commit, branch, remote, dirty flag and a digest of the changes.

The digest covers ``git diff HEAD`` (staged and unstaged edits to tracked files) and the
names and contents of untracked files, so two dirty runs with different edits never share it.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodeVersion:
    """What git says about a folder; every field is ``None`` outside a repository."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    diff_digest: str | None = None
    repo: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _git(folder: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=64)
def _remote(folder: Path) -> str | None:
    remote = _git(folder, "config", "--get", "remote.origin.url")
    return remote.decode().strip() if remote else None


def code_version(folder: str | Path | None = None) -> CodeVersion:
    """Read the code version of ``folder`` (default: the working directory).

    One ``git status`` gives commit, branch and changes; ``git diff`` runs only when the tree
    is dirty (every run pays for this, so it is kept to one or two subprocesses).

    >>> import tempfile
    >>> code_version(tempfile.mkdtemp()).commit is None
    True
    """
    where = Path(folder or Path.cwd()).absolute()
    status = _git(where, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
    if status is None:
        return CodeVersion()
    commit = branch = None
    changed, untracked = False, []
    for entry in status.split(b"\0"):
        if entry.startswith(b"# branch.oid "):
            commit = entry[13:].decode()
        elif entry.startswith(b"# branch.head "):
            branch = entry[14:].decode()
        elif entry.startswith(b"? "):
            untracked.append(entry[2:])
        elif entry[:2] in (b"1 ", b"2 ", b"u "):
            changed = True
    if commit is None or commit == "(initial)":
        return CodeVersion(branch=branch, repo=_remote(where))
    dirty = changed or bool(untracked)
    digest = None
    if dirty:
        h = hashlib.sha256(_git(where, "diff", "HEAD", "--binary") or b"")
        for name in sorted(untracked):  # paths are relative to ``where``
            h.update(b"\0untracked\0" + name + b"\0")
            try:
                h.update((where / name.decode()).read_bytes())
            except OSError:
                pass
        digest = h.hexdigest()
    return CodeVersion(commit=commit, branch=None if branch == "(detached)" else branch,
                       dirty=dirty, diff_digest=digest, repo=_remote(where))
