"""Settings from the environment (``PRODML_*``) with defaults under the working directory.

- ``PRODML_HOME``: folder for the embedded store and artifacts (default ``./.prodml``).
- ``PRODML_DATABASE_URL``: SQLAlchemy URL; default ``sqlite:///$PRODML_HOME/prodml.db``.
  ``postgresql+psycopg://user@host:port/db`` uses PostgreSQL.
- ``PRODML_ARTIFACTS``: fsspec location for artifacts (default ``$PRODML_HOME/artifacts``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where prodml keeps its records.

    >>> s = Settings.from_env({"PRODML_HOME": "/tmp/x"})
    >>> s.database_url
    'sqlite:////tmp/x/prodml.db'
    >>> s.artifacts
    '/tmp/x/artifacts'
    """

    home: Path
    database_url: str
    artifacts: str

    @classmethod
    def from_env(cls, environ: "os._Environ[str] | dict[str, str] | None" = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("PRODML_HOME") or Path.cwd() / ".prodml").expanduser().absolute()
        url = env.get("PRODML_DATABASE_URL") or f"sqlite:///{home / 'prodml.db'}"
        artifacts = env.get("PRODML_ARTIFACTS") or str(home / "artifacts")
        return cls(home=home, database_url=url, artifacts=artifacts)
