"""Wiring for the gateway: load the survey texts, hook the flow into the engine."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.core.settings import Settings
from surveys.flow import SurveyFlow
from surveys.store import SurveyStore
from surveys.sweeper import SurveySweeper
from surveys.texts import SurveyTexts

TEXTS = "data/surveys.yml"


async def attach_surveys(engine: Any, settings: Settings, db: Any) -> SurveySweeper:
    """Give `engine` its survey flow; returns the sweeper for the caller to run."""
    texts = await asyncio.to_thread(
        SurveyTexts.load, settings.root / TEXTS, settings.business.placeholders()
    )
    engine.surveys = SurveyFlow(engine, SurveyStore(db), texts, settings.surveys)
    return SurveySweeper(engine)
