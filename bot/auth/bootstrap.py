"""The first account: never a default password.

In production nothing is created: the log says how to add the first admin. In the embedded
demo (`make run` without CARELINE_ENV=production) a fresh install with no accounts gets an
`admin` account with a random password, printed once to the terminal.
"""

from __future__ import annotations

import logging
import secrets

from bot.auth.accounts import Accounts
from bot.core.security import production_mode
from bot.core.settings import Settings
from bot.core.store.models import Role

log = logging.getLogger("careline.auth")
FIRST_ADMIN_HINT = "careline agents add admin --role admin"


async def ensure_demo_admin(accounts: Accounts, settings: Settings, *, public_url: str) -> None:
    if await accounts.count() > 0:
        return
    if production_mode() or not settings.auth.demo_admin:
        log.warning("no console accounts yet; create the first one with: %s", FIRST_ADMIN_HINT)
        return
    password = secrets.token_urlsafe(12)
    try:
        await accounts.add(
            "admin", password, role=Role.ADMIN.value, display_name="Admin (demo)",
            queues=list(settings.triage.queues),
        )  # fmt: skip
    except ValueError:  # another replica created it at the same moment
        return
    print(
        "\n  Demo console account created (shown once; change it with "
        "`careline agents set-password admin`):\n"
        f"    {public_url}/login   user: admin   password: {password}\n",
        flush=True,
    )
