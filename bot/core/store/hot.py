"""The statements every message runs, on PostgreSQL straight on the asyncpg connection.

Why: through SQLAlchemy's asyncio layer, each statement of a turn pays for its cache-key
walk, its result machinery and a greenlet switch, which cost more CPU than PostgreSQL spends
running it. These are still the SQLAlchemy constructs the rest of the store uses, compiled
once for the asyncpg dialect; they run on a connection checked out of the same pool (so
search_path, pool limits and disposal stay one thing), and autocommit, so one statement is
its own transaction. Driver errors come out as SQLAlchemy's, as from any other call. On
SQLite the same constructs simply run through SQLAlchemy Core.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Insert, Select, Update

Row = dict[str, Any]
Statement = Select[Any] | Insert | Update
Run = Callable[[Statement, Mapping[str, Any]], Awaitable[list[Row]]]

# What says the connection or the server is gone (as opposed to a bad statement): the
# connection is dropped from the pool, and callers see the OperationalError they handle.
_CONNECTION_LOST = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, cannot connect now
    OSError,
    TimeoutError,
)


class DriverStatement:
    """One construct compiled for asyncpg: its SQL, the order of its parameters, the
    values SQLAlchemy bound itself (literals), and which parameters are JSON (sent as text,
    which is what the json codec SQLAlchemy sets on the connection takes)."""

    def __init__(
        self, statement: Statement, dialect: Any, column_keys: Sequence[str] | None,
        json_columns: frozenset[str],
    ) -> None:  # fmt: skip
        compiled = statement.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys else None
        )
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup or ())
        self._bound = dict(compiled.params)
        self._json = json_columns

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name in self._names:
            value = params[name] if name in params else self._bound[name]
            if name in self._json and value is not None:
                value = json.dumps(value)
            values.append(value)
        return values

    @staticmethod
    def row(record: asyncpg.Record) -> Row:
        return dict(record.items())  # JSON comes decoded: SQLAlchemy set the json codec


class HotStatements:
    """Runs prebuilt statements on one autocommit connection from the engine's pool."""

    def __init__(self, engine: AsyncEngine, json_columns: frozenset[str]) -> None:
        self._engine = engine
        self._driver = engine.dialect.name == "postgresql"
        self._json = json_columns
        self._compiled: dict[tuple[int, tuple[str, ...]], DriverStatement] = {}

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Row]:
        async with self.connection() as run:
            return await run(statement, params)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Run]:
        """A runner for several statements on one connection (each commits on its own)."""
        async with self._engine.connect() as conn:
            if not self._driver:

                async def run_core(statement: Statement, params: Mapping[str, Any]) -> list[Row]:
                    result = await conn.execute(statement, dict(params))
                    return [dict(r._mapping) for r in result] if result.returns_rows else []

                yield run_core
                return
            raw = await conn.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection

            async def run_driver(statement: Statement, params: Mapping[str, Any]) -> list[Row]:
                return await self._run(conn, driver, statement, params)

            yield run_driver

    async def _run(
        self, conn: AsyncConnection, driver: asyncpg.Connection, statement: Statement,
        params: Mapping[str, Any],
    ) -> list[Row]:  # fmt: skip
        compiled = self._compiled_for(statement, params)
        args = compiled.args(params)
        try:
            records = await driver.fetch(compiled.sql, *args)
        except asyncpg.IntegrityConstraintViolationError as e:
            raise exc.IntegrityError(compiled.sql, args, e) from e
        except _CONNECTION_LOST as e:
            await conn.invalidate()  # not back into the pool
            raise exc.OperationalError(compiled.sql, args, e) from e
        except asyncpg.PostgresError as e:
            raise exc.DBAPIError(compiled.sql, args, e) from e
        return [compiled.row(r) for r in records]

    def _compiled_for(self, statement: Statement, params: Mapping[str, Any]) -> DriverStatement:
        # An INSERT's columns are the keys given; every other statement names its own.
        columns = tuple(params) if getattr(statement, "is_insert", False) else ()
        key = (id(statement), columns)
        found = self._compiled.get(key)
        if found is None:
            found = DriverStatement(statement, self._engine.dialect, columns, self._json)
            self._compiled[key] = found
        return found


__all__ = ["HotStatements", "Row"]
