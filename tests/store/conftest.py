"""Store fixtures: `db` runs each test on a fresh SQLite file and a fresh PostgreSQL schema.

PostgreSQL is not optional: if it is unreachable the PostgreSQL half of the suite fails,
saying so (scripts/ensure-services.sh starts it when it is installed).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.core.store.db import Database

PG_URL = os.environ.get("CARELINE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


async def _pg_admin() -> asyncpg.Connection:
    """A plain asyncpg connection for creating/dropping schemas, or a clear test failure."""
    dsn = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        masked = make_url(PG_URL).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is required for the store tests but {masked} is unreachable: {e!r}. "
            "Start it (scripts/ensure-services.sh) or set CARELINE_TEST_PG_URL.",
            pytrace=False,
        )


async def _sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    await db.migrate()
    try:
        yield db
    finally:
        await db.close()


async def _pg_db() -> AsyncIterator[Database]:
    schema = f"test_store_{uuid4().hex[:16]}"  # parallel runs never share a schema
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        db = Database(PG_URL, schema=schema)
        try:
            await db.migrate()
            yield db
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database of each dialect."""
    factory = _sqlite_db(tmp_path) if request.param == "sqlite" else _pg_db()
    async for database in factory:
        yield database
