"""Initial schema: customer, conversation, message, escalation.

Written by hand to match bot/core/store/models.py exactly (tests/store checks it with Alembic's
compare_metadata). Types are spelled out here rather than imported from the models, so this
revision keeps meaning the same thing when the models move on.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNPROCESSED = "sender = 'customer' AND processed_at IS NULL"


def _ts(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customer",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=True),
        sa.Column("language", sa.String(), nullable=True),
        sa.Column("unreachable", sa.Boolean(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("last_seen_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "external_id", name="uq_customer_channel_external_id"),
    )
    op.create_table(
        "conversation",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("escalated_at", nullable=True),
        _ts("first_human_reply_at", nullable=True),
        _ts("resolved_at", nullable=True),
        _ts("closed_at", nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(), nullable=True),
        sa.Column("severity", sa.String(), nullable=True),
        sa.Column("agent_id", sa.String(), nullable=True),
        sa.Column("bot_only", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name="fk_conversation_customer_id_customer"
        ),
    )
    op.create_index("ix_conversation_customer_id", "conversation", ["customer_id"])
    op.create_index("ix_conversation_state", "conversation", ["state"])

    op.create_table(
        "message",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("sender_id", sa.String(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("client_msg_id", sa.String(), nullable=True),
        sa.Column("intent", sa.String(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        _ts("created_at", nullable=False),
        _ts("processed_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_message_conversation_id_conversation",
        ),
        sa.UniqueConstraint(
            "conversation_id", "client_msg_id", name="uq_message_conversation_id_client_msg_id"
        ),
    )
    op.create_index("ix_message_conversation_id_id", "message", ["conversation_id", "id"])
    op.create_index(
        "ix_message_unprocessed",
        "message",
        ["created_at"],
        sqlite_where=sa.text(UNPROCESSED),
        postgresql_where=sa.text(UNPROCESSED),
    )

    op.create_table(
        "escalation",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("severity", sa.String(), nullable=True),
        sa.Column("queue", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_escalation_conversation_id_conversation",
        ),
    )
    op.create_index("ix_escalation_conversation_id", "escalation", ["conversation_id"])


def downgrade() -> None:
    op.drop_table("escalation")
    op.drop_table("message")
    op.drop_table("conversation")
    op.drop_table("customer")
