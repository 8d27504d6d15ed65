"""Wiring for the gateway: load the survey texts and build the closing flow the conversation
core is given."""

from __future__ import annotations

import asyncio

from bot.conversation.ports import ConversationOutput
from bot.core.settings import Settings
from bot.core.store.db import Database
from surveys.flow import SurveyFlow
from surveys.store import SurveyStore
from surveys.texts import SurveyTexts

TEXTS = "data/surveys.yml"


async def load_survey_flow(
    settings: Settings, db: Database, output: ConversationOutput
) -> SurveyFlow:
    texts = await asyncio.to_thread(
        SurveyTexts.load, settings.root / TEXTS, settings.business.placeholders()
    )
    return SurveyFlow(output, db, SurveyStore(db), texts, settings.surveys)


__all__ = ["TEXTS", "load_survey_flow"]
