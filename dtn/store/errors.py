"""What the store raises."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked; the message says why."""


class StoreFull(StoreError):
    """Accepting this bundle would exceed a quota. Nothing already stored is dropped."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit  # "bytes" or "bundles"


class DuplicateBundle(StoreError):
    """A bundle with this ID is already stored (live or as a tombstone)."""
