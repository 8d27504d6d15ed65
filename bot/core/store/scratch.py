"""A throwaway PostgreSQL schema: tests and benchmarks run in one and drop it afterwards,
so parallel runs on a shared server never see each other's tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def temporary_schema(url: str, prefix: str = "tmp") -> AsyncIterator[str]:
    """Create a fresh schema on the server at `url` (a plain postgresql:// URL), yield its
    name, and drop it with everything in it. Connection errors propagate to the caller."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url, timeout=5)
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
        yield name
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.close()
