"""Telegram delivery ledger: which outbound messages reached each Telegram chat.

Written by hand to match bot/core/store/models.py (TelegramDelivery); tests/store checks it.

Revision ID: 0003_telegram
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_telegram"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telegram_delivery",
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("parts_sent", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["message.id"], name="fk_telegram_delivery_message_id_message"
        ),
    )
    op.create_index(
        "ix_telegram_delivery_conversation_id", "telegram_delivery", ["conversation_id"]
    )


def downgrade() -> None:
    op.drop_table("telegram_delivery")
