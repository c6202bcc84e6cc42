"""Settings from the environment (``PRODML_*``) with defaults under the working directory.

- ``PRODML_HOME``: folder for the embedded store and artifacts (default ``./.prodml``).
- ``PRODML_DATABASE_URL``: SQLAlchemy URL; default ``sqlite:///$PRODML_HOME/prodml.db``.
  ``postgresql+psycopg://user@host:port/db`` uses PostgreSQL.
- ``PRODML_ARTIFACTS``: fsspec location for artifacts (default ``$PRODML_HOME/artifacts``).
- ``PRODML_REQUIRE_BLESSING``: ``1`` makes every endpoint refuse a version without a
  passing gate (as if deployed with ``--require-blessing``); default off.
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
    require_blessing: bool = False

    @classmethod
    def from_env(cls, environ: "os._Environ[str] | dict[str, str] | None" = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("PRODML_HOME") or Path.cwd() / ".prodml").expanduser().absolute()
        url = env.get("PRODML_DATABASE_URL") or f"sqlite:///{home / 'prodml.db'}"
        artifacts = env.get("PRODML_ARTIFACTS") or str(home / "artifacts")
        require_blessing = _flag(env.get("PRODML_REQUIRE_BLESSING"), "PRODML_REQUIRE_BLESSING")
        return cls(home=home, database_url=url, artifacts=artifacts,
                   require_blessing=require_blessing)


def _flag(value: str | None, name: str) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off (any case); unset is off.

    >>> _flag("1", "X"), _flag("off", "X"), _flag(None, "X")
    (True, False, False)
    """
    if value is None or not value.strip():
        return False
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    from prodml.errors import InvalidInputError

    raise InvalidInputError(name, value, "must be 1 or 0 (true/false, yes/no, on/off)")
