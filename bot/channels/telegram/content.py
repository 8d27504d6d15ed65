"""What a Telegram message carries, in our terms: the customer's language and, for photos,
stickers, voice, files and the like, an attachment record an agent can act on."""

from __future__ import annotations

from typing import Any

from telegram import Message

from bot.core.vocabulary import LANGS

ATTACHMENT_KINDS = ("photo", "sticker", "voice", "audio", "video", "video_note", "animation",
                    "document", "location", "contact")  # fmt: skip


def language_of(code: str | None) -> str | None:
    """Telegram's IETF language_code ("vi", "en-US") → our language, if we speak it."""
    base = (code or "").split("-", 1)[0].lower()
    return base if base in LANGS else None


def attachment_record(message: Message) -> tuple[str, dict[str, Any]] | None:
    """(kind, record) for non-text content: what an agent needs to fetch and judge it."""
    for kind in ATTACHMENT_KINDS:
        value = getattr(message, kind, None)
        if not value:
            continue
        if kind == "photo":
            value = max(value, key=lambda p: (p.width or 0) * (p.height or 0))  # largest size
        record: dict[str, Any] = {"kind": kind}
        for field in ("file_id", "file_unique_id", "file_size", "mime_type", "file_name",
                      "width", "height", "duration", "emoji", "latitude", "longitude",
                      "phone_number"):  # fmt: skip
            v = getattr(value, field, None)
            if v is not None and not callable(v):
                record[field] = v if isinstance(v, int | float | str) else str(v)
        return kind, record
    return None
