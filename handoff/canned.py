"""Canned responses: ready-made replies in vi/en that supervisors manage and agents insert.

Search folds case and Vietnamese diacritics ("bao hanh" finds "Bảo hành"), because agents
type fast and often without tone marks. The set is small (tens to a few hundred rows), so
it is filtered in Python after one query rather than with dialect-specific SQL.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.core.store.db import Database
from bot.core.store.models import CannedResponse, utcnow
from bot.core.vocabulary import LANGS
from nlu.vi.text import fold

MAX_TITLE = 80
MAX_TEXT = 2000
MAX_ROWS = 1000  # a guard: a console list, not a knowledge base


class CannedError(ValueError):
    """A refused change, with an HTTP status and a message a supervisor can act on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CannedInput:
    """Validated fields of a canned response (what a supervisor may set)."""

    language: str
    title: str
    text: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CannedInput:
        language = body.get("language")
        if language not in LANGS:
            raise CannedError(400, "bad_request", "language must be 'vi' or 'en'")
        return cls(
            language=language,
            title=_clean(body.get("title"), "title", MAX_TITLE, single_line=True),
            text=_clean(body.get("text"), "text", MAX_TEXT, single_line=False),
        )


def _clean(value: Any, key: str, limit: int, *, single_line: bool) -> str:
    """NFC, control characters dropped (newlines kept in the text), trimmed, length-checked."""
    if not isinstance(value, str):
        raise CannedError(400, "bad_request", f"{key} must be a string")
    keep = "" if single_line else "\n\t"
    value = "".join(
        ch
        for ch in unicodedata.normalize("NFC", value)
        if ch in keep or unicodedata.category(ch) != "Cc"
    ).strip()
    if not value:
        raise CannedError(400, "bad_request", f"{key} must not be empty")
    if len(value) > limit:
        raise CannedError(413, "too_long", f"{key} is longer than {limit} characters")
    return value


def view(row: CannedResponse) -> dict[str, Any]:
    return {
        "id": row.id,
        "language": row.language,
        "title": row.title,
        "text": row.text,
        "updated_at": row.updated_at.isoformat(),
    }


class CannedResponses:
    """The canned-response table; a thin, stateless wrapper around the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(self, query: str = "", language: str | None = None) -> list[CannedResponse]:
        """Every response whose title or text contains all words of `query` (folded), titles
        first, in title order."""
        stmt = select(CannedResponse).order_by(CannedResponse.title).limit(MAX_ROWS)
        if language in LANGS:
            stmt = stmt.where(CannedResponse.language == language)
        async with self.db.sql_sessions() as s:
            rows = list((await s.scalars(stmt)).all())
        words = fold(query).split()
        if not words:
            return rows
        hits = []
        for row in rows:
            title, text = fold(row.title), fold(row.text)
            if all(w in title or w in text for w in words):
                hits.append((not all(w in title for w in words), row))
        return [row for _, row in sorted(hits, key=lambda h: h[0])]

    async def get(self, canned_id: int) -> CannedResponse | None:
        async with self.db.sql_sessions() as s:
            return await s.get(CannedResponse, canned_id)

    async def add(self, data: CannedInput, *, by: str) -> CannedResponse:
        row = CannedResponse(
            language=data.language, title=data.title, text=data.text, created_by=by, updated_by=by
        )
        try:
            async with self.db.sql_sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            raise _duplicate(data) from None
        return row

    async def update(self, canned_id: int, data: CannedInput, *, by: str) -> CannedResponse:
        try:
            async with self.db.sql_sessions.begin() as s:
                row = await s.get(CannedResponse, canned_id)
                if row is None:
                    raise CannedError(404, "not_found", "no such canned response")
                row.language, row.title, row.text = data.language, data.title, data.text
                row.updated_by, row.updated_at = by, utcnow()
        except IntegrityError:
            raise _duplicate(data) from None
        return row

    async def delete(self, canned_id: int) -> None:
        async with self.db.sql_sessions.begin() as s:
            row = await s.get(CannedResponse, canned_id)
            if row is None:
                raise CannedError(404, "not_found", "no such canned response")
            await s.delete(row)


def _duplicate(data: CannedInput) -> CannedError:
    return CannedError(
        409, "duplicate", f"a {data.language} canned response titled {data.title!r} exists"
    )
