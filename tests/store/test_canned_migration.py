"""The canned-response migration (0005_canned) creates exactly what models.py describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from bot.core.store.db import Database
from bot.core.store.models import metadata
from tests.store.test_store_migrations import _table_of


async def test_canned_response_table_matches_the_model(db: Database) -> None:
    def check(conn: Connection) -> tuple[bool, list[object]]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, metadata) if _table_of(d) == "canned_response"]
        return "canned_response" in inspect(conn).get_table_names(schema=db.schema), diffs

    async with db.sql_engine.connect() as conn:
        assert await conn.run_sync(check) == (True, [])
