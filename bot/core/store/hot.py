"""The statements every message runs, on PostgreSQL straight on asyncpg.

Why: through SQLAlchemy's asyncio layer, each statement of a turn pays for its cache-key
walk, its result machinery, a pool checkout and greenlet switches, which cost more CPU than
PostgreSQL spends running it. These are still the SQLAlchemy constructs the rest of the
store uses, compiled once for the asyncpg dialect, and run on a small asyncpg pool with the
store's server settings (search_path, application_name); each statement commits on its
own. Driver errors come out as SQLAlchemy's, as from any other call, so callers handle an
outage the same way. On SQLite the same constructs simply run through SQLAlchemy Core.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Insert, Select, Update

CLOSE_WAIT_S = 5.0  # closing the store waits this long for statements still running

Row = dict[str, Any]
Statement = Select[Any] | Insert | Update
Run = Callable[[Statement, Mapping[str, Any]], Awaitable[list[Row]]]

# What says the connection or the server is gone (as opposed to a bad statement): callers
# see the OperationalError they handle, and the pool replaces a closed connection.
_CONNECTION_LOST = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, cannot connect now
    OSError,
    TimeoutError,
)


async def _json_codec(conn: asyncpg.Connection) -> None:
    """JSON as SQLAlchemy's asyncpg dialect has it: text in, Python values out."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=str, decoder=orjson.loads, schema="pg_catalog", format="text"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool: nothing. These statements leave
    no session state behind (no LISTEN, SET, advisory lock or open cursor), and asyncpg rolls
    back a transaction left open before calling this; its default reset would add a round
    trip (`RESET ALL; UNLISTEN *; …`) to every statement."""


class DriverStatement:
    """One construct compiled for asyncpg: its SQL, the order of its parameters, the
    values SQLAlchemy bound itself (literals), and which parameters are JSON (sent as text,
    which is what the pool's json codec takes)."""

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
        # The column types' own checks and conversions (e.g. refusing a naive datetime),
        # as SQLAlchemy would apply them; JSON is encoded here instead (see above).
        self._processors = {
            name: processor
            for name in self._names
            if name not in json_columns
            and (processor := compiled.binds[name].type.bind_processor(dialect)) is not None
        }

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name in self._names:
            value = params[name] if name in params else self._bound[name]
            if name in self._json and value is not None:
                value = json.dumps(value)
            elif (processor := self._processors.get(name)) is not None:
                value = processor(value)
            values.append(value)
        return values

    @staticmethod
    def row(record: asyncpg.Record) -> Row:
        return dict(record.items())  # JSON comes decoded (the pool's codec)


class HotStatements:
    """Runs prebuilt statements: on PostgreSQL on a small asyncpg pool of its own (a checkout
    from SQLAlchemy's async pool costs two greenlet switches and more than the statement),
    on SQLite through the engine's Core connections."""

    def __init__(
        self, engine: AsyncEngine, json_columns: frozenset[str], *,
        dsn: str | None = None, server_settings: Mapping[str, str] | None = None,
        pool_size: int = 10,
    ) -> None:  # fmt: skip
        self._engine = engine
        self._dsn = dsn if engine.dialect.name == "postgresql" else None
        self._server_settings = dict(server_settings or {})
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._json = json_columns
        # By the construct's identity; the construct is kept with its compiled form, so an id
        # is never reused while cached (callers pass statements built once, not per call).
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[Statement, DriverStatement]] = {}

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Row]:
        async with self.connection() as run:
            return await run(statement, params)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Run]:
        """A runner for several statements on one connection (each commits on its own)."""
        if self._dsn is None:
            async with self._engine.connect() as conn:

                async def run_core(statement: Statement, params: Mapping[str, Any]) -> list[Row]:
                    result = await conn.execute(statement, dict(params))
                    return [dict(r._mapping) for r in result] if result.returns_rows else []

                yield run_core
            return
        async with self._driver() as driver:

            async def run_driver(statement: Statement, params: Mapping[str, Any]) -> list[Row]:
                return await self._run(driver, statement, params)

            yield run_driver

    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool, for as long as the block runs."""
        pool = await self._driver_pool()
        try:
            driver = await pool.acquire()
        except _CONNECTION_LOST as e:
            raise exc.OperationalError("(connect)", (), e) from e
        try:
            yield driver
        finally:
            await pool.release(driver)

    async def _driver_pool(self) -> asyncpg.Pool:
        """The pool, made on first use (and again after a failed first connect)."""
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                assert self._dsn is not None
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=0, max_size=self._pool_size,
                        server_settings=self._server_settings, init=_json_codec,
                        reset=_keep_session,
                    )  # fmt: skip
                except _CONNECTION_LOST as e:
                    raise exc.OperationalError("(connect)", (), e) from e
            return self._pool

    async def close(self) -> None:
        """Close the pool; connections still busy after a few seconds are cut."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CLOSE_WAIT_S)
            except TimeoutError:
                pool.terminate()

    async def driver_rows(self, sql: str, args: Sequence[Any]) -> list[Row]:
        """PostgreSQL only: run SQL written for asyncpg (a statement SQLAlchemy cannot build
        as cheaply, such as an INSERT of many rows from arrays), with the same pool and the
        same translation of driver errors as every other hot statement."""
        if self._dsn is None:
            raise RuntimeError("driver statements run on PostgreSQL only")
        async with self._driver() as driver:
            return await self._fetch(driver, sql, args)

    async def _run(
        self, driver: asyncpg.Connection, statement: Statement, params: Mapping[str, Any]
    ) -> list[Row]:
        compiled = self._compiled_for(statement, params)
        try:
            args = compiled.args(params)
        except (TypeError, ValueError) as e:  # a value its column refuses, as SQLAlchemy says
            raise exc.StatementError(str(e), compiled.sql, dict(params), e) from e
        return await self._fetch(driver, compiled.sql, args)

    async def _fetch(self, driver: asyncpg.Connection, sql: str, args: Sequence[Any]) -> list[Row]:
        try:
            records = await driver.fetch(sql, *args)
        except asyncpg.IntegrityConstraintViolationError as e:
            raise exc.IntegrityError(sql, args, e) from e
        except asyncpg.InternalClientError as e:
            # The connection is in a state no statement can run in ("another operation is in
            # progress": one cut short by a fault). Without the reset query on release, the
            # pool would hand it out again; closed, it is replaced, and the caller retries.
            driver.terminate()
            raise exc.OperationalError(sql, args, e) from e
        except _CONNECTION_LOST as e:
            # The pool replaces this connection on release; the idle ones most likely went
            # down with it (a restart, a failover), so they reconnect on their next use
            # rather than each failing one more statement after the server is back.
            if self._pool is not None:
                await self._pool.expire_connections()
            raise exc.OperationalError(sql, args, e) from e
        except asyncpg.PostgresError as e:
            raise exc.DBAPIError(sql, args, e) from e
        return [DriverStatement.row(r) for r in records]

    def _compiled_for(self, statement: Statement, params: Mapping[str, Any]) -> DriverStatement:
        # An INSERT's columns are the keys given; every other statement names its own.
        columns = tuple(params) if getattr(statement, "is_insert", False) else ()
        key = (id(statement), columns)
        cached = self._compiled.get(key)
        if cached is None:
            compiled = DriverStatement(statement, self._engine.dialect, columns, self._json)
            cached = self._compiled[key] = (statement, compiled)
        return cached[1]


__all__ = ["HotStatements", "Row"]
