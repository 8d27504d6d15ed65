"""Survey fixtures: `db` is a migrated, empty database of each dialect (tests/store)."""

from __future__ import annotations

from tests.store.conftest import db

__all__ = ["db"]
