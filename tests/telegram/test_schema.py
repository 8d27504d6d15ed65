"""The telegram_delivery migration (0003_telegram) matches the model, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from bot.core.store.db import Database
from bot.core.store.models import metadata
from tests.store.conftest import db  # noqa: F401  (the migrated SQLite + PostgreSQL fixture)
from tests.store.test_store_migrations import _table_of


async def test_telegram_delivery_migration_matches_the_model(db: Database) -> None:  # noqa: F811
    def diff(conn: Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(ctx, metadata) if _table_of(d) == "telegram_delivery"]

    async with db.sql_engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c, schema=db.schema)))
    assert "telegram_delivery" in tables
