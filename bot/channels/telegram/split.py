"""Splitting long replies into Telegram-sized parts.

Telegram refuses a message longer than 4,096 characters, counted in UTF-16 code units (an
emoji outside the BMP counts twice). Agents paste long instructions, so a reply is cut at the
last paragraph break, else line break, else space before the limit, and only mid-word when a
single "word" is longer than a whole message. Nothing is dropped or reordered.
"""

from __future__ import annotations

TELEGRAM_LIMIT = 4096
_BREAKS = ("\n\n", "\n", " ")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _prefix_within(text: str, limit: int) -> int:
    """The largest n such that text[:n] is at most `limit` UTF-16 units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def split_text(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Parts of at most `limit` UTF-16 units whose concatenation is `text` (minus the
    whitespace at each cut). An empty or blank text has no parts."""
    if limit < 2:
        raise ValueError("limit must be at least 2 (one character of any kind)")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        hard = _prefix_within(rest, limit)
        cut = 0
        for sep in _BREAKS:
            at = rest.rfind(sep, 0, hard + len(sep) - 1)
            if at > hard // 2:  # a break in the first half would waste a whole message
                cut = at
                break
        if cut == 0:
            cut = hard
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return parts
