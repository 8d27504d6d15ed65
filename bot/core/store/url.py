"""Database URLs as operators write them, turned into what the async engine needs.

Hosting platforms hand out `postgres://…?sslmode=require` and people type `sqlite:///x.db`;
both name sync drivers. Only the two async drivers we ship are accepted, so a wrong URL fails
at startup with a message instead of at the first query.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"

_ALIASES = {
    "sqlite": SQLITE_DRIVER,
    SQLITE_DRIVER: SQLITE_DRIVER,
    "postgres": POSTGRES_DRIVER,
    "postgresql": POSTGRES_DRIVER,
    POSTGRES_DRIVER: POSTGRES_DRIVER,
}


def normalize_url(raw: str | URL, *, root: Path | None = None) -> URL:
    """Map the URL onto an async driver; resolve a relative SQLite path against `root`."""
    url = make_url(raw)
    driver = _ALIASES.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database URL scheme {url.drivername!r}: use sqlite:///path/to/file.db "
            "or postgresql://user:password@host:port/dbname"
        )
    url = url.set(drivername=driver)
    if driver == SQLITE_DRIVER:
        return _sqlite_url(url, root)
    return _asyncpg_query(url)


def _sqlite_url(url: URL, root: Path | None) -> URL:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        # Each pooled connection would get its own private, empty database.
        raise ValueError(
            f"SQLite database must be a file path, not {database or 'in-memory'!r}: "
            "e.g. sqlite:///var/careline.db"
        )
    path = Path(database).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    return url.set(database=str(path))


def _asyncpg_query(url: URL) -> URL:
    """libpq's `sslmode=` is spelled `ssl=` by asyncpg."""
    query = dict(url.query)
    if "sslmode" in query:
        query.setdefault("ssl", query.pop("sslmode"))
    return url.set(query=query)


def sqlite_path(url: URL) -> Path:
    """The database file of a normalized SQLite URL."""
    return Path(url.database or "")


def masked(url: URL) -> str:
    """The URL safe for logs and reprs: the password replaced by ***."""
    return url.render_as_string(hide_password=True)
