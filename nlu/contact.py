"""Contact details in a customer's callback message: a Vietnamese phone number or an email.

Deliberately strict: we would rather ask again than call a wrong number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
# 0xxxxxxxxx (10 digits) or +84 / 84 followed by 9 digits; spaces, dots, dashes allowed.
_PHONE = re.compile(r"(?<!\d)(?:\+?84|0)(?:[\s.-]?\d){9}(?!\d)")


@dataclass(frozen=True)
class Contact:
    phone: str | None = None
    email: str | None = None

    def __bool__(self) -> bool:
        return bool(self.phone or self.email)

    def display(self) -> str:
        return " / ".join(x for x in (self.phone, self.email) if x)


def find_contact(text: str) -> Contact:
    email = _EMAIL.search(text)
    phone = _PHONE.search(text)
    digits = re.sub(r"\D", "", phone.group()) if phone else None
    if digits and digits.startswith("84"):
        digits = "0" + digits[2:]
    return Contact(phone=digits, email=email.group() if email else None)
