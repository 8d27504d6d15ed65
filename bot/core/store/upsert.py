"""INSERT … ON CONFLICT in whichever dialect the store runs on (SQLite or PostgreSQL).

Why one helper: idempotent writes (a retried message, a survey offered twice, a delivery
recorded again) are how careline survives crashes and retries, and both dialects spell them
with their own `insert` construct; callers say what they mean once, here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import SQLModel


def insert_ignoring_conflict(
    dialect: str, model: type[SQLModel], values: Mapping[str, Any], unique: Sequence[str]
) -> Any:
    """INSERT `values`, or nothing when a row with the same `unique` columns exists."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(model).values(**values).on_conflict_do_nothing(index_elements=list(unique))


def insert_ignoring_conflict_returning(
    dialect: str, model: type[SQLModel], unique: Sequence[str]
) -> Any:
    """A prebuilt Core INSERT of one row (values given when executed) that does nothing when a
    row with the same `unique` columns exists, returning the inserted row's columns: for
    the hot path, where building the statement per call cost more than running it."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = model.__table__  # type: ignore[attr-defined]
    return insert(table).on_conflict_do_nothing(index_elements=list(unique)).returning(*table.c)


def insert_ignoring_conflict_when(
    dialect: str, model: type[SQLModel], columns: Sequence[str], unique: Sequence[str],
    condition: Any,
) -> Any:  # fmt: skip
    """Like insert_ignoring_conflict_returning, but the row goes in only while `condition`
    holds, checked in the same statement (INSERT … SELECT … WHERE): a write that must not
    land after something changed (a message into a conversation that has closed) needs no
    read before it. The values are bound parameters named after `columns`."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = model.__table__  # type: ignore[attr-defined]
    values = select(*(bindparam(name, type_=table.c[name].type) for name in columns))
    return (
        insert(table)
        .from_select(list(columns), values.where(condition))
        .on_conflict_do_nothing(index_elements=list(unique))
        .returning(*table.c)
    )


def upsert(
    dialect: str, model: type[SQLModel], values: Mapping[str, Any], unique: Sequence[str]
) -> Any:
    """INSERT `values`, or update the other columns of the row with the same `unique` ones."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(model)
        .values(**values)
        .on_conflict_do_update(
            index_elements=list(unique),
            set_={k: v for k, v in values.items() if k not in unique},
        )
    )


__all__ = [
    "insert_ignoring_conflict",
    "insert_ignoring_conflict_returning",
    "insert_ignoring_conflict_when",
    "upsert",
]
