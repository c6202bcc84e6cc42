"""The one store: SQLAlchemy tables with migrations, and content-addressed artifacts."""

from prodml.store.artifacts import ArtifactStore, Blob
from prodml.store.store import Store, db_now_ms, get_store, now_ms, open_store, \
    reset_default_store

__all__ = ["ArtifactStore", "Blob", "Store", "db_now_ms", "get_store", "now_ms", "open_store",
           "reset_default_store"]
