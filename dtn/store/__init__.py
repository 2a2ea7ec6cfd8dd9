"""The persistent bundle store: SQLite in WAL mode on disk, grouped commits, quotas.

See docs/store.md. Imports nothing from the shell; the agent calls it synchronously.
"""

from .schema import State
from .store import (
    BundleStore,
    DuplicateBundle,
    NewBundle,
    Quota,
    StoredBundle,
    StoreError,
    StoreFull,
)

__all__ = [
    "BundleStore",
    "DuplicateBundle",
    "NewBundle",
    "Quota",
    "State",
    "StoreError",
    "StoreFull",
    "StoredBundle",
]
