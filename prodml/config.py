"""Settings from the environment (``PRODML_*``) with defaults under the working directory.

- ``PRODML_HOME``: folder for the embedded store and artifacts (default ``./.prodml``).
- ``PRODML_DATABASE_URL``: SQLAlchemy URL; default ``sqlite:///$PRODML_HOME/prodml.db``.
  ``postgresql+psycopg://user@host:port/db`` uses PostgreSQL.
- ``PRODML_ARTIFACTS``: fsspec location for artifacts (default ``$PRODML_HOME/artifacts``).
- ``PRODML_ADMIN_TOKEN``: an admin token set by the environment (besides stored tokens).
- ``PRODML_ALLOWED_HOSTS``: host names the server answers besides loopback ones (comma
  separated; ``*`` for any, behind a proxy that checks Host).
- ``PRODML_ALLOWED_ORIGINS``: other origins whose pages may change state (comma separated).
- ``PRODML_PREDICT_ACCESS`` / ``PRODML_READ_ACCESS``: ``open`` (default) or ``token``.
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
    admin_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    predict_access: str = "open"
    read_access: str = "open"

    @classmethod
    def from_env(cls, environ: "os._Environ[str] | dict[str, str] | None" = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("PRODML_HOME") or Path.cwd() / ".prodml").expanduser().absolute()
        url = env.get("PRODML_DATABASE_URL") or f"sqlite:///{home / 'prodml.db'}"
        artifacts = env.get("PRODML_ARTIFACTS") or str(home / "artifacts")
        return cls(home=home, database_url=url, artifacts=artifacts,
                   admin_token=env.get("PRODML_ADMIN_TOKEN") or None,
                   allowed_hosts=_names(env.get("PRODML_ALLOWED_HOSTS")),
                   allowed_origins=_names(env.get("PRODML_ALLOWED_ORIGINS")),
                   predict_access=env.get("PRODML_PREDICT_ACCESS") or "open",
                   read_access=env.get("PRODML_READ_ACCESS") or "open")


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())
