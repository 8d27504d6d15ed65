"""Database URLs and construction: what operators type becomes what the async engine needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.settings import DatabaseSettings, Settings
from bot.core.store.db import Database
from bot.core.store.url import normalize_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:pw@db:5432/care", "postgresql+asyncpg://u:pw@db:5432/care"),
        ("postgresql://u:pw@db/care", "postgresql+asyncpg://u:pw@db/care"),
        ("postgresql+asyncpg://u@db/care", "postgresql+asyncpg://u@db/care"),
        (
            "postgres://u:pw@db/care?sslmode=require",
            "postgresql+asyncpg://u:pw@db/care?ssl=require",
        ),
        ("sqlite:////srv/care.db", "sqlite+aiosqlite:////srv/care.db"),
        ("sqlite+aiosqlite:////srv/care.db", "sqlite+aiosqlite:////srv/care.db"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw).render_as_string(hide_password=False) == expected


def test_relative_sqlite_path_resolves_against_root(tmp_path: Path) -> None:
    url = normalize_url("sqlite+aiosqlite:///var/careline.db", root=tmp_path)
    assert url.database == str(tmp_path / "var" / "careline.db")


@pytest.mark.parametrize(
    "raw", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "sqlite://", "sqlite:///:memory:"]
)
def test_unsupported_urls_are_rejected_with_a_reason(raw: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported|file path"):
        normalize_url(raw)


async def test_password_is_masked_in_repr_but_kept_for_connecting() -> None:
    db = Database("postgres://careline:s3cr3t-pw@db.internal:5432/care")
    try:
        assert db.dialect == "postgresql"
        assert db.url == "postgresql+asyncpg://careline:s3cr3t-pw@db.internal:5432/care"
        assert "s3cr3t-pw" not in repr(db) and "s3cr3t-pw" not in str(db)
        assert "careline:***@db.internal" in repr(db)
    finally:
        await db.close()


def test_schema_is_postgresql_only_and_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        Database(f"sqlite:///{tmp_path}/x.db", schema="s1")
    with pytest.raises(ValueError, match="schema name"):
        Database("postgresql://u@h/db", schema='bad"; DROP')


async def test_sqlite_file_is_created_in_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "careline.db"
    db = Database(f"sqlite:///{path}")
    try:
        assert db.dialect == "sqlite" and db.url == f"sqlite+aiosqlite:///{path}"
        await db.migrate()
        assert path.is_file()
        assert await db.ping()
    finally:
        await db.close()


async def test_from_settings_resolves_sqlite_next_to_config(
    settings: Settings, tmp_path: Path
) -> None:
    # The default database setting, with config.yml living in tmp_path.
    local = settings.model_copy(update={"root": tmp_path, "database": DatabaseSettings()})
    db = Database.from_settings(local)
    try:
        assert db.url == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'careline.db'}"
        assert (tmp_path / "var").is_dir()
    finally:
        await db.close()


async def test_ping_is_false_quickly_when_the_server_is_down() -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none")
    try:
        assert await db.ping() is False
    finally:
        await db.close()


async def test_from_settings_uses_pg_schema_on_postgresql_only(
    settings: Settings, tmp_path: Path
) -> None:
    def configured(url: str) -> Settings:
        database = DatabaseSettings(url=url, pg_schema="careline")
        return settings.model_copy(update={"root": tmp_path, "database": database})

    pg = Database.from_settings(configured("postgres://u:pw@db/care"))
    lite = Database.from_settings(configured("sqlite:///var/x.db"))
    try:
        assert (pg.dialect, pg.schema) == ("postgresql", "careline")
        assert (lite.dialect, lite.schema) == ("sqlite", None)
    finally:
        await pg.close()
        await lite.close()
