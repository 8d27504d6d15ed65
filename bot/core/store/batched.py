"""Group commit of single-row INSERTs on PostgreSQL: concurrent callers' rows go in as one
statement, each column's values as one array, unnested.

Why: a turn stores its messages (and a first contact its customer and conversation) one row
at a time, and under load a round trip, a statement and a WAL flush each cost more than the
row itself. One statement text serves every batch size, so asyncpg prepares it once per
connection, and rows keep the order they were given in (their ids follow it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, exc
from sqlalchemy.engine import Dialect

from bot.core.store.coalesce import Coalescer
from bot.core.store.hot import HotStatements, Row


class ArrayInsert:
    """INSERT … SELECT … FROM unnest(<one array per column>) ON CONFLICT (unique) DO NOTHING
    RETURNING the rows inserted; optionally only rows for which `only_if` holds, a condition
    on the row (`v.<column>`) whose own parameters follow the arrays (`$<n+1>` …)."""

    def __init__(
        self, table: Table, columns: Sequence[str], unique: Sequence[str], dialect: Dialect,
        *, json_columns: frozenset[str], only_if: str | None = None,
    ) -> None:  # fmt: skip
        self._columns = tuple(columns)
        self._unique = tuple(unique)
        self._json = json_columns & set(columns)
        quote = dialect.identifier_preparer.quote
        arrays, picked = [], []
        for i, name in enumerate(self._columns, start=1):
            sql_type = "TEXT" if name in self._json else table.c[name].type.compile(dialect)
            arrays.append(f"${i}::{sql_type}[]")
            picked.append(f"v.{quote(name)}::JSON" if name in self._json else f"v.{quote(name)}")
        names = ", ".join(quote(name) for name in self._columns)
        self.sql = (
            f"INSERT INTO {quote(table.name)} ({names}) "
            f"SELECT {', '.join(picked)} "
            f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS v({names}, row_number) "
            + (f"WHERE {only_if} " if only_if else "")
            + "ORDER BY v.row_number "
            f"ON CONFLICT ({', '.join(quote(name) for name in self._unique)}) DO NOTHING "
            "RETURNING *"
        )
        self._processors = {
            name: processor
            for name in self._columns
            if name not in self._json
            and (processor := table.c[name].type.bind_processor(dialect)) is not None
        }

    def args(self, rows: Sequence[Mapping[str, Any]], *extra: Any) -> list[Any]:
        """The statement's parameters: one array per column, then `only_if`'s."""
        arrays: list[list[Any]] = [[] for _ in self._columns]
        for row in rows:
            for values, name in zip(arrays, self._columns, strict=True):
                value = row.get(name)
                try:
                    if name in self._json and value is not None:
                        value = json.dumps(value)
                    elif (processor := self._processors.get(name)) is not None:
                        value = processor(value)
                except (TypeError, ValueError) as e:  # as SQLAlchemy says it for one row
                    raise exc.StatementError(str(e), self.sql, dict(row), e) from e
                values.append(value)
        return [*arrays, *extra]

    def match(self, rows: Sequence[Mapping[str, Any]], inserted: Sequence[Row]) -> list[Row | None]:
        """Each given row's inserted row, or None where nothing went in (a conflict, or
        `only_if` did not hold). Of two given rows with the same key, the first is the one
        inserted: the second met it as a conflict."""
        by_key = {tuple(row[name] for name in self._unique): row for row in inserted}
        found: list[Row | None] = []
        for row in rows:
            found.append(by_key.pop(tuple(row.get(name) for name in self._unique), None))
        return found


def fault_of_a_row(error: Exception) -> bool:
    """A batch refused for one of its rows (a value or a key the database rejects), not
    because the database is unreachable: its rows are written again one by one."""
    return isinstance(error, exc.StatementError) and not isinstance(error, exc.OperationalError)


class GroupInsert:
    """One kind of row, inserted by many callers at once: each `insert()` returns its own
    row (None where nothing went in) once the statement carrying it has committed."""

    def __init__(self, hot: HotStatements, statement: ArrayInsert, *extra: Any) -> None:
        """`extra`: the values of the statement's `only_if` parameters."""
        self._hot = hot
        self._statement = statement
        self._extra = extra
        self._rows: Coalescer[Mapping[str, Any], Row | None] = Coalescer(
            self._write, item_fault=fault_of_a_row
        )

    async def insert(self, row: Mapping[str, Any]) -> Row | None:
        return await self._rows.submit(row)

    async def _write(self, rows: Sequence[Mapping[str, Any]]) -> list[Row | None]:
        statement = self._statement
        inserted = await self._hot.driver_rows(statement.sql, statement.args(rows, *self._extra))
        return statement.match(rows, inserted)


__all__ = ["ArrayInsert", "GroupInsert"]
