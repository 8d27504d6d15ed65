"""Alembic environment for careline's store.

At run time `Database.migrate()` hands us an open connection (already inside its locked
transaction) through `config.attributes["connection"]`, so no alembic.ini or URL is needed.
For the alembic CLI (`alembic -c bot/core/store/alembic.ini upgrade head`) the URL comes from
DATABASE_URL or config.yml, and the PostgreSQL schema from `-x schema=NAME` or
`database.pg_schema`.

Tables added in other modules must be imported here so autogenerate can see them.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from bot.core.store.models import metadata

config = context.config


def run_with_connection(connection: Connection) -> None:
    """Apply migrations on `connection`; alembic's version table goes in the same schema."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=config.attributes.get("schema"),
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _cli_schema() -> str | None:
    return context.get_x_argument(as_dictionary=True).get("schema")


def _cli_database():  # type: ignore[no-untyped-def]
    from bot.core.settings import load_settings
    from bot.core.store.db import Database
    from bot.core.store.url import normalize_url

    settings = load_settings()  # applies DATABASE_URL
    schema = _cli_schema()
    if schema is None:
        return Database.from_settings(settings)  # database.pg_schema, if set
    url = normalize_url(settings.database.url, root=settings.root)
    return Database(url.render_as_string(hide_password=False), schema=schema)


async def _run_cli_online() -> None:
    db = _cli_database()
    config.attributes["schema"] = db.schema
    try:
        await db._run_locked(run_with_connection)
    finally:
        await db.close()


def run_offline() -> None:
    """`alembic upgrade head --sql`: print the DDL instead of running it."""
    db = _cli_database()
    context.configure(
        url=db.url,
        target_metadata=metadata,
        version_table_schema=db.schema,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif config.attributes.get("connection") is not None:
    run_with_connection(config.attributes["connection"])
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_cli_online())
