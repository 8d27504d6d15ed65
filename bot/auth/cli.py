"""`careline agents add|list|disable|enable|set-password|logout`: console accounts from a shell.

Passwords are read without echo (or from stdin with --password-stdin, for scripts); they
never appear as command-line arguments, which other users of the machine could see.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from bot.auth.accounts import ROLES, AccountError, Accounts
from bot.auth.passwords import WeakPassword, check_policy
from bot.core.settings import Settings
from bot.core.store.db import Database


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise AccountError("the two passwords differ")
    check_policy(password)
    return password


async def _with_accounts(settings: Settings, fn: Any) -> Any:
    db = Database.from_settings(settings)
    try:
        await db.migrate()
        return await fn(Accounts(db, known_queues=settings.triage.queues))
    finally:
        await db.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (AccountError, WeakPassword) as e:
        print(f"careline agents: {e}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    cmd = args.agents_command
    if cmd == "add":
        password = _password(args)
        queues = [q for q in (args.queues or "").split(",") if q]

        async def add(accounts: Accounts) -> None:
            a = await accounts.add(
                args.username, password, role=args.role, display_name=args.name,
                queues=queues, max_chats=args.max_chats,
            )  # fmt: skip
            print(f"added {a.username} ({a.role}), queues: {', '.join(a.queues) or '-'}")

        await _with_accounts(settings, add)
    elif cmd == "list":

        async def show(accounts: Accounts) -> None:
            rows = await accounts.all()
            print(f"{'USERNAME':<20} {'ROLE':<11} {'MAX':>3}  {'STATE':<8} QUEUES / NAME")
            for a in rows:
                state = "disabled" if a.disabled else "active"
                queues = ",".join(a.queues) or "-"
                print(
                    f"{a.username:<20} {a.role:<11} {a.max_chats:>3}  {state:<8} "
                    f"{queues} / {a.display_name}"
                )

        await _with_accounts(settings, show)
    elif cmd in ("disable", "enable"):

        async def toggle(accounts: Accounts) -> None:
            await accounts.set_disabled(args.username, cmd == "disable")
            print(f"{args.username}: {cmd}d (a disabled account's sessions stop at once)")

        await _with_accounts(settings, toggle)
    elif cmd == "set-password":
        password = _password(args)

        async def change(accounts: Accounts) -> None:
            await accounts.set_password(args.username, password)
            print(f"{args.username}: password changed")

        await _with_accounts(settings, change)
    return 0


def add_parser(sub: Any, func: Any) -> None:
    ag = sub.add_parser("agents", help="console accounts (agents, supervisors, managers, admins)")
    asub = ag.add_subparsers(dest="agents_command", required=True, metavar="COMMAND")
    add = asub.add_parser("add", help="create an account (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="agent")
    add.add_argument("--name", help="display name shown to customers (default: username)")
    add.add_argument("--queues", help="comma-separated queues the account serves")
    add.add_argument("--max-chats", type=int, default=3, help="concurrent chats (default 3)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    asub.add_parser("list", help="list accounts")
    for name, text in (("disable", "block an account"), ("enable", "unblock an account")):
        asub.add_parser(name, help=text).add_argument("username")
    sp = asub.add_parser("set-password", help="change an account's password")
    sp.add_argument("username")
    sp.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    ag.set_defaults(func=func)
