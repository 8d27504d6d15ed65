"""Survey responses: one row per resolved conversation (CES, CSAT, NPS, comment, milestones).

Written by hand to match SurveyResponse in bot/core/store/models.py (tests/store checks it).

Revision ID: 0004_surveys
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_surveys"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "survey_response",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("queue", sa.String(), nullable=True),
        sa.Column("severity", sa.String(), nullable=True),
        sa.Column("agent_id", sa.String(), nullable=True),
        sa.Column("bot_only", sa.Boolean(), nullable=False),
        sa.Column("reopened", sa.Boolean(), nullable=False),
        sa.Column("demo", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=True),
        sa.Column("ces", sa.Integer(), nullable=True),
        sa.Column("csat", sa.Integer(), nullable=True),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        _ts("conversation_created_at", nullable=False),
        _ts("escalated_at", nullable=True),
        _ts("first_human_reply_at", nullable=True),
        _ts("resolved_at", nullable=False),
        _ts("repeat_contact_at", nullable=True),
        _ts("asked_at", nullable=False),
        _ts("expires_at", nullable=False),
        _ts("answered_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_survey_response_conversation_id_conversation",
        ),
        sa.UniqueConstraint("conversation_id", name="uq_survey_response_conversation_id"),
    )
    op.create_index("ix_survey_response_resolved_at", "survey_response", ["resolved_at"])
    op.create_index(
        "ix_survey_response_customer_id_resolved_at",
        "survey_response",
        ["customer_id", "resolved_at"],
    )
    op.create_index(
        "ix_survey_response_status_expires_at", "survey_response", ["status", "expires_at"]
    )


def downgrade() -> None:
    op.drop_table("survey_response")
