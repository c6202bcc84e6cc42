"""The code a run ran: git commit, branch, remote, dirty flag and a digest of the changes.

The digest covers ``git diff HEAD`` (staged and unstaged edits to tracked files) and the
names and contents of untracked files, so two dirty runs with different edits never share it.
"""

from __future__ import annotations

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


def code_version(folder: str | Path | None = None) -> CodeVersion:
    """Read the code version of ``folder`` (default: the working directory).

    >>> import tempfile
    >>> code_version(tempfile.mkdtemp()).commit is None
    True
    """
    where = Path(folder or Path.cwd())
    commit = _git(where, "rev-parse", "HEAD")
    if commit is None:
        return CodeVersion()
    branch = _git(where, "rev-parse", "--abbrev-ref", "HEAD")
    remote = _git(where, "config", "--get", "remote.origin.url")
    diff = _git(where, "diff", "HEAD", "--binary") or b""
    untracked = (_git(where, "ls-files", "--others", "--exclude-standard", "-z") or b"")
    untracked_names = [n for n in untracked.split(b"\0") if n]
    dirty = bool(diff or untracked_names)
    digest = None
    if dirty:
        top = Path((_git(where, "rev-parse", "--show-toplevel") or b".").decode().strip())
        h = hashlib.sha256(diff)
        for name in sorted(untracked_names):
            h.update(b"\0untracked\0" + name + b"\0")
            try:
                h.update((top / name.decode()).read_bytes())
            except OSError:
                pass
        digest = h.hexdigest()
    return CodeVersion(commit=commit.decode().strip(),
                       branch=branch.decode().strip() if branch else None,
                       dirty=dirty, diff_digest=digest,
                       repo=remote.decode().strip() if remote else None)
