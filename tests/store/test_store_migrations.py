"""Migrations: idempotent, in the right schema, and exactly what the models describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Table, inspect, text

from bot.core.store.db import Database, alembic_config
from bot.core.store.models import metadata

TABLES = {"customer", "conversation", "message", "escalation", "survey_response"}


async def _scalar(db: Database, sql: str) -> object:
    async with db.sql_engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def test_migrate_twice_is_a_no_op(db: Database) -> None:
    await db.migrate()  # the fixture already migrated once
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    assert "0004_surveys" in heads  # feature branches sit side by side, each off 0001
    async with db.sql_engine.connect() as conn:
        found = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
        assert set(found) == heads
    customer = await db.get_or_create_customer("widget", "kept")
    await db.migrate()
    assert (await db.get_customer(customer.id)) == customer


async def test_tables_and_version_table_live_in_the_schema(db: Database) -> None:
    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names(schema=db.schema))

    async with db.sql_engine.connect() as conn:
        found = await conn.run_sync(tables)
    assert found >= {*TABLES, "alembic_version"}


async def test_migration_matches_the_models(db: Database) -> None:
    """The hand-written migration and models.py must not drift apart."""

    def diff(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(ctx, metadata) if _table_of(d) in TABLES]

    async with db.sql_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def _table_of(diff: Any) -> str | None:
    """The table an autogenerate diff is about: we judge only ours, since other modules may
    register tables (with migrations of their own) in the same metadata."""
    if isinstance(diff, list):  # modify_* diffs: [(op, schema, table, column, ...), ...]
        return diff[0][2]
    target = diff[1]
    if isinstance(target, Table):
        return target.name
    table = getattr(target, "table", None)
    return table.name if table is not None else None


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/p.db")
    try:
        await db.migrate()
        async with db.sql_engine.connect() as conn:
            pragma = conn.exec_driver_sql
            assert (await pragma("PRAGMA journal_mode")).scalar_one() == "wal"
            assert (await pragma("PRAGMA foreign_keys")).scalar_one() == 1
            assert (await pragma("PRAGMA busy_timeout")).scalar_one() >= 1000
    finally:
        await db.close()
