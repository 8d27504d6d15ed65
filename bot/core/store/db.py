"""The async repository: every read and write of durable chat state goes through `Database`.

Each method is one short transaction (or one statement, autocommitted) on its own session,
so callers never hold a connection across an await on the network, and returned rows stay
readable after the session closes (expire_on_commit=False). Idempotent writes use INSERT …
ON CONFLICT DO NOTHING (both SQLite and PostgreSQL support it), which stays correct when
concurrent duplicates race: the loser inserts nothing and re-reads the winner's row, with no
aborted transaction to clean up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Integer,
    and_,
    any_,
    event,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import ClauseElement, Select, Update
from sqlalchemy.sql.expression import BindParameter, bindparam
from sqlmodel import SQLModel, col

from bot.core.store.batched import ArrayInsert, GroupInsert
from bot.core.store.coalesce import Coalescer
from bot.core.store.hot import HotStatements
from bot.core.store.models import (
    Conversation,
    ConversationState,
    Customer,
    Escalation,
    EscalationKind,
    Message,
    Sender,
    utcnow,
)
from bot.core.store.upsert import (
    insert_ignoring_conflict_returning,
    insert_ignoring_conflict_when,
)
from bot.core.store.url import SQLITE_DRIVER, masked, normalize_url, sqlite_path

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

    from bot.core.settings import Settings

log = logging.getLogger("careline.store")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PING_TIMEOUT_S = 2.0
SQLITE_BUSY_TIMEOUT_MS = 10_000
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SENDERS = frozenset(s.value for s in Sender)
_KINDS = frozenset(k.value for k in EscalationKind)

M = TypeVar("M", bound=SQLModel)

# What a call raises while the database is down, starting up or failing over: the driver's
# errors (wrapped by SQLAlchemy) or a refused connection. Callers that can answer "try again
# shortly" catch these; anything else is a bug and stays an error.
STORE_UNREACHABLE: tuple[type[Exception], ...] = (DBAPIError, OSError, TimeoutError)


class Database:
    """Async access to the SQL store (SQLite file or PostgreSQL)."""

    url: str
    dialect: str

    def __init__(self, url: str, *, echo: bool = False, schema: str | None = None) -> None:
        self._url = normalize_url(url)
        self.url = self._url.render_as_string(hide_password=False)
        self.dialect = self._url.get_backend_name()
        self.schema = _check_schema(schema, self.dialect)
        if self._url.drivername == SQLITE_DRIVER:
            sqlite_path(self._url).parent.mkdir(parents=True, exist_ok=True)
        self.sql_engine: AsyncEngine = self._create_engine(echo)
        self._sql_sessions = async_sessionmaker(self.sql_engine, expire_on_commit=False)
        # For work that is one statement (every read, and writes such as marking a message
        # processed): the statement commits on its own, without the BEGIN and COMMIT/ROLLBACK
        # round trips a transaction adds on PostgreSQL. Same pool, same connections.
        self._autocommit = self.sql_engine.execution_options(isolation_level="AUTOCOMMIT")
        self._autocommit_sessions = async_sessionmaker(self._autocommit, expire_on_commit=False)
        self._insert_message = insert_ignoring_conflict_returning(
            self.dialect, Message, ["conversation_id", "client_msg_id"]
        )
        conversations = Conversation.__table__  # type: ignore[attr-defined]
        self._insert_while_open = insert_ignoring_conflict_when(
            self.dialect, Message, _OPEN_INSERT_COLUMNS, ["conversation_id", "client_msg_id"],
            exists().where(
                conversations.c.id == bindparam("conversation_id"),
                conversations.c.state != ConversationState.CLOSED.value,
            ),
        )  # fmt: skip
        self._insert_customer = insert_ignoring_conflict_returning(
            self.dialect, Customer, ["channel", "external_id"]
        )
        self._marks: Coalescer[int, None] = Coalescer(self._write_marks)
        self._hot = HotStatements(
            self._autocommit, _JSON_COLUMNS, dsn=self._driver_dsn(),
            server_settings=self._server_settings(),
        )  # fmt: skip
        # PostgreSQL: concurrent turns' messages go in together (group commit), a customer's
        # into an open conversation by one statement, the rest (replies) by another; so do
        # first contacts' customers and conversations.
        self._message_inserts: GroupInsert | None = None
        self._open_inserts: GroupInsert | None = None
        self._customer_inserts: GroupInsert | None = None
        self._conversation_inserts: GroupInsert | None = None
        if self.dialect == "postgresql":
            self._group_inserts()

    def _group_inserts(self) -> None:
        dialect = self.sql_engine.dialect
        messages = Message.__table__  # type: ignore[attr-defined]
        customers = Customer.__table__  # type: ignore[attr-defined]
        conversations = Conversation.__table__  # type: ignore[attr-defined]
        no_json: frozenset[str] = frozenset()
        unique = ("conversation_id", "client_msg_id")
        self._message_inserts = GroupInsert(self._hot, ArrayInsert(
            messages, _MESSAGE_INSERT_COLUMNS, unique, dialect, json_columns=_JSON_COLUMNS
        ))  # fmt: skip
        self._open_inserts = GroupInsert(self._hot, ArrayInsert(
            messages, _OPEN_INSERT_COLUMNS, unique, dialect, json_columns=_JSON_COLUMNS,
            only_if=f"EXISTS (SELECT 1 FROM {conversations.name} AS c"
            f" WHERE c.id = v.conversation_id AND c.state <> ${len(_OPEN_INSERT_COLUMNS) + 1})",
        ), ConversationState.CLOSED.value)  # fmt: skip
        self._customer_inserts = GroupInsert(self._hot, ArrayInsert(
            customers, _CUSTOMER_COLUMNS, ("channel", "external_id"), dialect, json_columns=no_json
        ))  # fmt: skip
        self._conversation_inserts = GroupInsert(self._hot, ArrayInsert(
            conversations, _CONVERSATION_COLUMNS, ("id",), dialect, json_columns=no_json
        ))  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The configured database; a relative SQLite path is relative to config.yml.

        `database.pg_schema` applies to PostgreSQL only, so one config.yml serves both dialects.
        """
        url = normalize_url(settings.database.url, root=settings.root)
        schema = settings.database.pg_schema if url.get_backend_name() == "postgresql" else None
        return cls(
            url.render_as_string(hide_password=False), echo=settings.database.echo, schema=schema
        )

    @property
    def sql_sessions(self) -> async_sessionmaker[AsyncSession]:
        """For stores of other features (accounts, surveys) that share this engine."""
        return self._sql_sessions

    def __repr__(self) -> str:
        schema = f", schema={self.schema!r}" if self.schema else ""
        return f"Database({masked(self._url)!r}{schema})"

    def _create_engine(self, echo: bool) -> AsyncEngine:
        if self.dialect == "sqlite":
            engine = create_async_engine(self._url, echo=echo)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        settings = self._server_settings()
        # A pool big enough for the engine's workers plus the channels' request paths, so
        # connections are reused rather than opened and discarded as overflow under load.
        # No pre-ping: it doubled the round trips of every short transaction; a connection
        # the server dropped fails that one call (the caller retries) and is replaced.
        return create_async_engine(
            self._url,
            echo=echo,
            pool_size=20,
            max_overflow=20,
            pool_recycle=1800,
            connect_args={"server_settings": settings},
        )

    def _server_settings(self) -> dict[str, str]:
        settings = {"application_name": "careline"}
        if self.schema:
            # Unqualified names (ORM, migrations, raw SQL) all resolve into this schema only.
            settings["search_path"] = self.schema
        return settings

    def _driver_dsn(self) -> str | None:
        """The URL for asyncpg itself (the hot statements' pool), on PostgreSQL."""
        if self.dialect != "postgresql":
            return None
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)

    # -- lifecycle -----------------------------------------------------------------------------

    async def migrate(self) -> None:
        """Upgrade the schema to the newest migration; a no-op when already there."""
        schema = self.schema

        def upgrade(connection: Connection) -> None:
            from alembic import command

            # "heads": feature branches add migrations side by side (each off 0001).
            command.upgrade(alembic_config(connection, schema=schema), "heads")

        await self._run_locked(upgrade)
        log.info("database %s is at the newest schema", masked(self._url))

    async def _run_locked(self, fn: Callable[[Connection], None]) -> None:
        """Run a migration step in one transaction that no other migrating process can enter.

        Used by migrate() and by migrations/env.py for the alembic CLI.
        """
        async with self.sql_engine.connect() as conn:
            await self._lock_for_migration(conn)
            await conn.run_sync(fn)
            await conn.commit()

    async def _lock_for_migration(self, conn: AsyncConnection) -> None:
        if self.dialect == "sqlite":
            # Takes the write lock now (waiting out other writers) and makes the DDL atomic.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        key = zlib.crc32(f"careline.migrate.{self.schema or ''}".encode())
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        if self.schema:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))

    async def ping(self) -> bool:
        """Readiness: can we run SELECT 1 within PING_TIMEOUT_S?"""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                async with self.sql_engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as e:  # readiness only reports; the cause goes to the log
            log.warning("database %s is not reachable: %r", masked(self._url), e)
            return False
        return True

    async def close(self) -> None:
        await self._hot.close()
        await self.sql_engine.dispose()

    # -- customers -----------------------------------------------------------------------------

    async def get_or_create_customer(
        self,
        channel: str,
        external_id: str,
        *,
        language: str | None = None,
        display_name: str | None = None,
    ) -> Customer:
        """The customer for this channel identity, created on first contact (race-safe)."""
        customer, _ = await self.customer_for(
            channel, external_id, language=language, display_name=display_name
        )
        return customer

    async def customer_for(
        self,
        channel: str,
        external_id: str,
        *,
        language: str | None = None,
        display_name: str | None = None,
        likely_new: bool = False,
    ) -> tuple[Customer, bool]:
        """The customer for this channel identity, created on first contact (race-safe),
        and True if this call created it. `likely_new`: the caller has reason to think the
        identity was never seen (the row is made without looking for one first; still
        right if it is there)."""
        if not likely_new:
            found = await self.find_customer(channel, external_id)
            if found is not None:
                return found, False
        new = Customer(
            channel=channel, external_id=external_id, language=language, display_name=display_name
        )
        # One autocommitted statement on first contact; a concurrent first contact that won
        # the race has committed its row before ours returns nothing, so the re-read sees it.
        identity = {"channel": channel, "external_id": external_id}
        if self._customer_inserts is not None:
            row = await self._customer_inserts.insert(new.model_dump())
            if row is not None:
                return _stored(Customer, row), True
            (existing,) = await self._hot.rows(_CUSTOMER_BY_IDENTITY, identity)
            return _stored(Customer, existing), False
        async with self._hot.connection() as run:
            inserted = await run(self._insert_customer, new.model_dump())
            if inserted:
                return _stored(Customer, inserted[0]), True
            (existing,) = await run(_CUSTOMER_BY_IDENTITY, identity)
            return _stored(Customer, existing), False

    async def find_customer(self, channel: str, external_id: str) -> Customer | None:
        identity = {"channel": channel, "external_id": external_id}
        return _first(await self._rows(Customer, _CUSTOMER_BY_IDENTITY, identity))

    async def get_customer(self, customer_id: str) -> Customer | None:
        async with self._autocommit_sessions() as s:
            return await s.get(Customer, customer_id)

    async def update_customer(self, customer_id: str, **fields: Any) -> None:
        """Set the given columns; raises KeyError if there is no such customer."""
        async with self._sql_sessions.begin() as s:
            await _update_row(s, Customer, customer_id, fields)

    # -- conversations -------------------------------------------------------------------------

    async def create_conversation(
        self, customer_id: str, channel: str, language: str
    ) -> Conversation:
        conversation = Conversation(customer_id=customer_id, channel=channel, language=language)
        if self._conversation_inserts is not None:
            if await self._conversation_inserts.insert(conversation.model_dump()) is None:
                raise RuntimeError(f"a conversation {conversation.id!r} exists already")
        else:
            await self._hot.rows(_INSERT_CONVERSATION, conversation.model_dump())
        return conversation

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        found = await self._rows(Conversation, _CONVERSATION_BY_ID, {"id": conversation_id})
        return _first(found)

    async def latest_conversation(self, customer_id: str) -> Conversation | None:
        """The customer's newest conversation (by created_at), whatever its state."""
        found = await self._rows(Conversation, _LATEST_CONVERSATION, {"customer_id": customer_id})
        return _first(found)

    async def update_conversation(self, conversation_id: str, **fields: Any) -> Conversation:
        """Set the given columns and bump updated_at; raises KeyError if missing.

        Values may be SQL expressions, e.g. reopen_count=Conversation.reopen_count + 1, so
        counters are incremented atomically in the database.
        """
        fields.setdefault("updated_at", utcnow())
        _check_updatable(Conversation, fields)
        # One statement, its own transaction: UPDATE … RETURNING the row as it now is.
        if any(isinstance(v, ClauseElement) for v in fields.values()):
            table = Conversation.__table__  # type: ignore[attr-defined]
            expression = (
                update(table)
                .where(table.c.id == bindparam("pk"))
                .values(**fields)
                .returning(*table.c)
            )
            async with self._autocommit.connect() as c:
                result = await c.execute(expression, {"pk": conversation_id})
                found = [dict(r._mapping) for r in result]
        else:  # plain values, the usual case: a statement built once per set of columns
            params = {f"set_{name}": value for name, value in fields.items()}
            prebuilt = _conversation_update(tuple(sorted(fields)))
            found = await self._hot.rows(prebuilt, {"pk": conversation_id, **params})
        if not found:
            raise KeyError(f"no Conversation with id {conversation_id!r}")
        return _stored(Conversation, found[0])

    async def list_conversations(
        self,
        *,
        customer_id: str | None = None,
        states: list[str] | None = None,
        limit: int = 50,
    ) -> list[Conversation]:
        """Newest first, optionally for one customer and/or in the given states."""
        query = select(Conversation)
        if customer_id is not None:
            query = query.where(col(Conversation.customer_id) == customer_id)
        if states is not None:
            query = query.where(col(Conversation.state).in_(states))
        query = query.order_by(col(Conversation.created_at).desc()).limit(limit)
        async with self._autocommit_sessions() as s:
            return list((await s.scalars(query)).all())

    # -- messages ------------------------------------------------------------------------------

    async def add_message(
        self,
        conversation_id: str,
        sender: str,
        text: str,
        *,
        client_msg_id: str | None = None,
        sender_id: str | None = None,
        payload: dict[str, Any] | None = None,
        intent: str | None = None,
        confidence: float | None = None,
        processed: bool = False,
    ) -> tuple[Message, bool]:
        """Store a message once per client_msg_id: (message, True) if new, else (existing, False).

        Channels retry and widgets resend on reconnect; the unique (conversation_id,
        client_msg_id) constraint turns those resends into no-ops even when they race.
        """
        _check_choice("sender", sender, _SENDERS)
        created_at = utcnow()
        values = {
            "conversation_id": conversation_id,
            "sender": sender,
            "text": text,
            "client_msg_id": client_msg_id,
            "sender_id": sender_id,
            "payload": payload,
            "intent": intent,
            "confidence": confidence,
            "created_at": created_at,
            "processed_at": created_at if processed else None,
        }
        # Core, not the ORM, on the turn's hottest statement; autocommit: the INSERT is the
        # write, and the re-read after a conflict sees the winner's committed row (a
        # concurrent insert of the same key waits for that one to commit first).
        key = {"conversation_id": conversation_id, "client_msg_id": client_msg_id}
        if self._message_inserts is not None and client_msg_id is not None:
            row = await self._message_inserts.insert(values)
            if row is not None:
                return _stored(Message, row), True
            (existing,) = await self._hot.rows(_MESSAGE_BY_CLIENT_ID, key)
            return _stored(Message, existing), False
        async with self._hot.connection() as run:
            inserted = await run(self._insert_message, values)
            if inserted:
                return _stored(Message, inserted[0]), True
            (existing,) = await run(_MESSAGE_BY_CLIENT_ID, key)
            return _stored(Message, existing), False

    async def add_to_open_conversation(
        self, conversation_id: str, text: str, *, client_msg_id: str,
        payload: dict[str, Any] | None = None,
    ) -> Message | None:  # fmt: skip
        """Store a new customer message if its conversation is open, in one statement (the
        check is part of the INSERT): the message of a customer whose open conversation is
        known needs no read first. None if the conversation is closed or gone, or if the
        message is already there (a retry): the caller then takes the general way,
        `add_message` into the conversation it finds."""
        created_at = utcnow()
        values = {
            "conversation_id": conversation_id, "sender": Sender.CUSTOMER.value, "text": text,
            "client_msg_id": client_msg_id, "payload": payload, "created_at": created_at,
        }  # fmt: skip
        if self._open_inserts is not None:
            row = await self._open_inserts.insert(values)
            return None if row is None else _stored(Message, row)
        inserted = await self._hot.rows(self._insert_while_open, values)
        return _stored(Message, inserted[0]) if inserted else None

    async def mark_processed(self, message_id: int) -> None:
        """Record that the engine handled this message (keeps the first time if repeated).
        Concurrent turns' marks share one statement (group commit); this returns once the
        mark is committed."""
        await self._marks.submit(message_id)

    async def _write_marks(self, message_ids: Sequence[int]) -> list[None]:
        at = utcnow()
        if self.dialect == "postgresql":
            await self._hot.rows(_MARK_MANY_PROCESSED, {"ids": list(message_ids), "at": at})
        else:
            async with self._hot.connection() as run:  # SQLite: one statement per mark
                for message_id in message_ids:
                    await run(_MARK_PROCESSED, {"message_id": message_id, "at": at})
        return [None] * len(message_ids)

    async def unprocessed_customer_messages(
        self, *, older_than_s: float = 0, limit: int = 100, conversation_id: str | None = None
    ) -> list[Message]:
        """Customer messages the engine has not finished, oldest first, optionally of one
        conversation (the sweep's and the checks' view; a turn reads `pending_work`)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        params: dict[str, Any] = {"cutoff": cutoff, "limit": limit}
        query = _UNPROCESSED
        if conversation_id is not None:
            query, params["conversation_id"] = _UNPROCESSED_OF_CONVERSATION, conversation_id
        return await self._rows(Message, query, params)

    async def pending_work(
        self, conversation_id: str, *, context: int, limit: int
    ) -> PendingWork | None:
        """What a turn of the conversation needs, in one statement: the conversation as it
        is now, its first `limit` unanswered customer messages in order, and for each the
        texts of the customer's last `context` messages before it (none empty), oldest
        first, which triage reads with it. None if there is no such conversation."""
        rows = await self._hot.rows(
            _pending_work_query(context), {"conversation_id": conversation_id, "limit": limit}
        )
        if not rows:
            return None
        first = rows[0]
        conversation = _stored(Conversation, {name: first[name] for name in _CONVERSATION_COLUMNS})
        texts: list[str] = []
        pending: list[tuple[Message, tuple[str, ...]]] = []
        for row in rows:
            if row["m_id"] is None:  # the outer join's one row: nothing of the customer's
                break
            values = {name: row[f"m_{name}"] for name in _MESSAGE_COLUMNS}
            if values["processed_at"] is None:
                before = tuple(texts[-context:]) if context else ()
                pending.append((_stored(Message, values), before))
                if len(pending) == limit:
                    break
            if values["text"]:
                texts.append(values["text"])
        # A read cut by its row limit may have stopped short of messages still waiting
        # (answered or empty ones among them): then say so, and the caller reads again.
        more = len(pending) == limit or len(rows) == limit + context
        return PendingWork(conversation, pending, more=more)

    async def transcript(
        self, conversation_id: str, *, limit: int | None = None, include_notes: bool = True
    ) -> list[Message]:
        """The conversation's messages, oldest first; with limit, only the last `limit`."""
        query = _TRANSCRIPT[(limit is not None, include_notes)]
        params = {"conversation_id": conversation_id, "limit": limit}
        rows = await self._rows(Message, query, params)
        return rows if limit is None else rows[::-1]

    # -- escalations ---------------------------------------------------------------------------

    async def add_escalation(
        self,
        conversation_id: str,
        kind: str,
        *,
        actor: str = "bot",
        reason: str | None = None,
        severity: str | None = None,
        queue: str | None = None,
        note: str | None = None,
    ) -> Escalation:
        _check_choice("kind", kind, _KINDS)
        escalation = Escalation(
            conversation_id=conversation_id,
            kind=kind,
            actor=actor,
            reason=reason,
            severity=severity,
            queue=queue,
            note=note,
        )
        async with self._sql_sessions.begin() as s:
            s.add(escalation)
        return escalation

    async def escalations(self, conversation_id: str) -> list[Escalation]:
        """The conversation's handoff history, oldest first."""
        query = (
            select(Escalation)
            .where(col(Escalation.conversation_id) == conversation_id)
            .order_by(col(Escalation.id))
        )
        async with self._autocommit_sessions() as s:
            return list((await s.scalars(query)).all())

    async def open_safety_questions(self, since: datetime, limit: int = 1000) -> list[str]:
        """Bot-handled conversations whose last handoff record since `since` is an unanswered
        safety question ("asked"), oldest question first.

        Why: the pending question's deadline lives in Redis; these let a replica put it back
        when Redis has lost it. A candidate only: the caller re-checks under the lock."""
        query = (
            select(Escalation)
            .join(Conversation, col(Conversation.id) == Escalation.conversation_id)
            .where(
                col(Conversation.state) == ConversationState.BOT,
                col(Escalation.created_at) >= since,
            )
            .order_by(col(Escalation.id))
        )
        async with self._autocommit_sessions() as s:
            rows = list((await s.scalars(query)).all())
        last: dict[str, Escalation] = {}
        for row in rows:
            last.pop(row.conversation_id, None)  # re-insert: dict order follows the newest
            last[row.conversation_id] = row
        open_ = [
            e.conversation_id
            for e in last.values()
            if e.kind == EscalationKind.SAFETY_QUESTION and e.note == "asked"
        ]
        return open_[:limit]

    # -- helpers -------------------------------------------------------------------------------

    async def _rows(self, model: type[M], query: Any, params: dict[str, Any]) -> list[M]:
        """Rows of `model` read without an ORM session: the reads every message makes."""
        return [_stored(model, row) for row in await self._hot.rows(query, params)]


def _check_schema(schema: str | None, dialect: str) -> str | None:
    if schema is None:
        return None
    if dialect != "postgresql":
        raise ValueError("a schema can only be chosen on PostgreSQL")
    if not _SCHEMA_RE.fullmatch(schema):
        raise ValueError(f"schema name {schema!r}: use lowercase letters, digits and _")
    return schema


def _check_choice(what: str, value: str, allowed: frozenset[str]) -> None:
    """Fail fast on a typo instead of storing a value no query will ever match."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(allowed)}")


# The turn's statements, built once: a statement made afresh on every call costs more in
# SQLAlchemy's cache-key walk than the round trip to the database.
_CUSTOMER_BY_IDENTITY = select(Customer).where(
    col(Customer.channel) == bindparam("channel"),
    col(Customer.external_id) == bindparam("external_id"),
)
_LATEST_CONVERSATION = (
    select(Conversation)
    .where(col(Conversation.customer_id) == bindparam("customer_id"))
    .order_by(col(Conversation.created_at).desc())
    .limit(1)
)
_OPEN_INSERT_COLUMNS = (
    "conversation_id", "sender", "text", "client_msg_id", "payload", "created_at",
)  # fmt: skip
_MESSAGE_INSERT_COLUMNS = (
    "conversation_id", "sender", "text", "client_msg_id", "sender_id", "payload", "intent",
    "confidence", "created_at", "processed_at",
)  # fmt: skip
_INSERT_CONVERSATION = insert(Conversation.__table__)  # type: ignore[attr-defined]
_CONVERSATION_BY_ID = select(Conversation).where(col(Conversation.id) == bindparam("id"))
_JSON_COLUMNS = frozenset(
    c.name
    for c in Message.__table__.columns  # type: ignore[attr-defined]
    if isinstance(c.type, JSON)
)
_CONVERSATION_COLUMNS = tuple(Conversation.__table__.columns.keys())  # type: ignore[attr-defined]
_CUSTOMER_COLUMNS = tuple(Customer.__table__.columns.keys())  # type: ignore[attr-defined]
_MESSAGE_COLUMNS = tuple(Message.__table__.columns.keys())  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PendingWork:
    """A conversation's next turn: the conversation, its unanswered customer messages in
    order with each one's context (see `Database.pending_work`), and whether more wait."""

    conversation: Conversation
    messages: list[tuple[Message, tuple[str, ...]]]
    more: bool


@cache
def _pending_work_query(context: int) -> Select[Any]:
    """The conversation LEFT JOIN its customer messages from the first of the `context`
    (non-empty) ones before its first unanswered message on: the turn's three reads
    (conversation, work list, context) in one round trip, on both dialects. Message
    columns come labelled m_<name>."""
    conversation = Conversation.__table__  # type: ignore[attr-defined]
    table = Message.__table__  # type: ignore[attr-defined]
    wanted: BindParameter[str] = bindparam("conversation_id")
    first, earlier, joined = table.alias("first"), table.alias("earlier"), table.alias("m")
    first_pending = (
        select(func.min(first.c.id))
        .where(
            first.c.conversation_id == wanted,
            first.c.sender == Sender.CUSTOMER.value,
            first.c.processed_at.is_(None),
        )
        .scalar_subquery()
    )
    start: Any = first_pending
    if context:
        window = (
            select(earlier.c.id)
            .where(
                earlier.c.conversation_id == wanted,
                earlier.c.sender == Sender.CUSTOMER.value,
                earlier.c.text != "",
                earlier.c.id < first_pending,
            )
            .order_by(earlier.c.id.desc())
            .limit(context)
            .subquery()
        )
        start = func.coalesce(select(func.min(window.c.id)).scalar_subquery(), first_pending)
    on = and_(
        joined.c.conversation_id == conversation.c.id,
        joined.c.sender == Sender.CUSTOMER.value,
        joined.c.id >= start,
    )
    return (
        select(conversation, *(c.label(f"m_{c.name}") for c in joined.c))
        .select_from(conversation.outerjoin(joined, on))
        .where(conversation.c.id == wanted)
        .order_by(joined.c.id)
        .limit(bindparam("limit") + context)
    )


_MARK_PROCESSED = (
    update(Message)
    .where(col(Message.id) == bindparam("message_id"), col(Message.processed_at).is_(None))
    .values(processed_at=bindparam("at"))
    .execution_options(synchronize_session=False)
)
_MARK_MANY_PROCESSED = (  # PostgreSQL: a batch of marks in one statement
    update(Message)
    .where(
        col(Message.id) == any_(bindparam("ids", type_=ARRAY(Integer))),
        col(Message.processed_at).is_(None),
    )
    .values(processed_at=bindparam("at"))
    .execution_options(synchronize_session=False)
)
_MESSAGE_BY_CLIENT_ID = select(Message.__table__).where(  # type: ignore[attr-defined]
    col(Message.conversation_id) == bindparam("conversation_id"),
    col(Message.client_msg_id) == bindparam("client_msg_id"),
)


def _transcript_query(limited: bool, include_notes: bool) -> Any:
    query = select(Message).where(col(Message.conversation_id) == bindparam("conversation_id"))
    if not include_notes:
        query = query.where(col(Message.sender) != Sender.NOTE.value)
    if not limited:
        return query.order_by(col(Message.id))
    return query.order_by(col(Message.id).desc()).limit(bindparam("limit"))


_TRANSCRIPT = {
    (lim, notes): _transcript_query(lim, notes) for lim in (False, True) for notes in (False, True)
}
_UNPROCESSED = (
    select(Message)
    .where(
        col(Message.sender) == Sender.CUSTOMER.value,
        col(Message.processed_at).is_(None),
        col(Message.created_at) <= bindparam("cutoff"),
    )
    .order_by(col(Message.created_at), col(Message.id))
    .limit(bindparam("limit"))
)
_UNPROCESSED_OF_CONVERSATION = _UNPROCESSED.where(
    col(Message.conversation_id) == bindparam("conversation_id")
)


def _stored(model: type[M], row: Mapping[str, Any]) -> M:
    """A model of a row read from its own table: the values were validated on the way in
    and the column types convert them on the way out (UTCDateTime), so it is built without
    validating again, which costs about ten times as much per row."""
    return model.model_construct(**row)


_CONVERSATION_UPDATES: dict[tuple[str, ...], Update] = {}


def _conversation_update(columns: tuple[str, ...]) -> Update:
    """UPDATE conversations SET <columns> … RETURNING the row, built once per set of columns
    (the code sets a handful of different sets), so the hot statements compile it once."""
    query = _CONVERSATION_UPDATES.get(columns)
    if query is None:
        table = Conversation.__table__  # type: ignore[attr-defined]
        query = _CONVERSATION_UPDATES[columns] = (
            update(table)
            .where(table.c.id == bindparam("pk"))
            .values({c: bindparam(f"set_{c}", type_=table.c[c].type) for c in columns})
            .returning(*table.c)
        )
    return query


def _check_updatable(model: type[SQLModel], fields: Mapping[str, Any]) -> None:
    columns = set(model.__table__.columns.keys()) - {"id"}  # type: ignore[attr-defined]
    unknown = sorted(set(fields) - columns)
    if unknown:
        raise TypeError(f"{model.__name__} has no updatable field(s) {unknown}")


async def _update_row(
    session: AsyncSession, model: type[M], pk: Any, fields: dict[str, Any]
) -> None:
    """UPDATE one row by primary key; KeyError if it does not exist."""
    _check_updatable(model, fields)
    if not fields:
        return
    query = (
        update(model)
        .where(model.id == pk)  # type: ignore[attr-defined]
        .values(**fields)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(query)
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise KeyError(f"no {model.__name__} with id {pk!r}")


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    """Per-connection SQLite settings: WAL (readers don't block the writer), enforced foreign
    keys (off by default in SQLite), and waiting for the write lock instead of failing."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def alembic_config(connection: Connection | None = None, *, schema: str | None = None) -> Any:
    """An Alembic Config for our migrations without an ini file.

    migrations/env.py migrates through `connection` (inside our transaction) and keeps
    alembic's version table in `schema`.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def _first(rows: list[M]) -> M | None:
    return rows[0] if rows else None
