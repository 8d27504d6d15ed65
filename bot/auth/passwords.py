"""Password hashing with argon2id (the OWASP recommendation), plus a minimum policy.

Verification runs on a worker thread: argon2 is deliberately slow (tens of ms), and the
gateway's event loop must never stall on it.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current defaults
MIN_LENGTH = 10
MAX_LENGTH = 256  # hashing a megabyte "password" is a denial-of-service, not a password


class WeakPassword(ValueError):
    pass


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password may have at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_policy(password)
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password_async(stored_hash: str, password: str) -> bool:
    return await asyncio.to_thread(verify_password, stored_hash, password)


# A real hash of a random string: checking an unknown username against it costs the same time
# as a real check, so response timing does not reveal which usernames exist.
DUMMY_HASH = _hasher.hash("careline-dummy-password-never-matches")
