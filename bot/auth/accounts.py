"""Console accounts in SQL: create, find, list, disable, change password.

The CLI (`careline agents ...`) and the login endpoint are the only writers. Usernames are
case-insensitive (stored lowercased) so "An" and "an" cannot be two people.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot.auth.passwords import hash_password
from bot.core.store.db import Database
from bot.core.store.models import AgentAccount, Role, utcnow

ROLES = tuple(r.value for r in Role)
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,39}")


class AccountError(ValueError):
    """A clear, user-facing reason an account operation was refused."""


@dataclass(frozen=True)
class Principal:
    """Who is making a console request: what the API and pages need to decide access."""

    id: str
    username: str
    display_name: str
    role: str
    queues: tuple[str, ...]
    max_chats: int

    @classmethod
    def of(cls, a: AgentAccount) -> Principal:
        return cls(a.id, a.username, a.display_name, a.role, tuple(a.queues or ()), a.max_chats)

    def has_role(self, *roles: str) -> bool:
        return self.role == Role.ADMIN or self.role in roles

    @property
    def sees_all_queues(self) -> bool:
        return self.has_role(Role.SUPERVISOR)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "queues": list(self.queues),
            "max_chats": self.max_chats,
        }


def normalize_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_RE.fullmatch(name):
        raise AccountError(
            "a username is 2-40 characters: letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


class Accounts:
    def __init__(self, db: Database, *, known_queues: Sequence[str] = ()) -> None:
        self.db = db
        self.known_queues = tuple(known_queues)

    async def count(self) -> int:
        async with self.db.sql_sessions() as s:
            return int((await s.execute(select(func.count()).select_from(AgentAccount))).scalar())

    async def get(self, account_id: str) -> AgentAccount | None:
        async with self.db.sql_sessions() as s:
            return await s.get(AgentAccount, account_id)

    async def by_username(self, username: str) -> AgentAccount | None:
        try:
            name = normalize_username(username)
        except AccountError:
            return None
        async with self.db.sql_sessions() as s:
            query = select(AgentAccount).where(AgentAccount.username == name)
            return (await s.scalars(query)).first()

    async def all(self) -> list[AgentAccount]:
        async with self.db.sql_sessions() as s:
            query = select(AgentAccount).order_by(AgentAccount.username)
            return list((await s.scalars(query)).all())

    async def add(
        self,
        username: str,
        password: str,
        *,
        role: str = Role.AGENT.value,
        display_name: str | None = None,
        queues: Sequence[str] = (),
        max_chats: int = 3,
    ) -> AgentAccount:
        name = normalize_username(username)
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        self._check_queues(queues)
        if not 1 <= max_chats <= 50:
            raise AccountError("max_chats must be between 1 and 50")
        account = AgentAccount(
            username=name,
            display_name=(display_name or name).strip()[:80] or name,
            role=role,
            password_hash=await asyncio.to_thread(hash_password, password),  # slow by design
            queues=list(dict.fromkeys(queues)),
            max_chats=max_chats,
        )
        try:
            async with self.db.sql_sessions.begin() as s:
                s.add(account)
        except IntegrityError:
            raise AccountError(f"an account named {name!r} already exists") from None
        return account

    async def set_password(self, username: str, password: str) -> None:
        await self._update(username, password_hash=await asyncio.to_thread(hash_password, password))

    async def set_disabled(self, username: str, disabled: bool = True) -> None:
        await self._update(username, disabled=disabled)

    async def _update(self, username: str, **fields: object) -> None:
        name = normalize_username(username)
        async with self.db.sql_sessions.begin() as s:
            found = (
                await s.scalars(select(AgentAccount).where(AgentAccount.username == name))
            ).first()
            if found is None:
                raise AccountError(f"no account named {name!r}")
            for key, value in fields.items():
                setattr(found, key, value)
            if "password_hash" in fields:
                found.password_changed_at = utcnow()

    def _check_queues(self, queues: Sequence[str]) -> None:
        unknown = sorted(set(queues) - set(self.known_queues)) if self.known_queues else []
        if unknown:
            raise AccountError(
                f"unknown queue(s) {', '.join(unknown)}; configured: {', '.join(self.known_queues)}"
            )
