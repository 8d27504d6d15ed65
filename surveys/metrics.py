"""Prometheus metrics of the survey flow (served with the gateway's at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SURVEYS_OFFERED = Counter("careline_surveys_offered_total", "Surveys offered at close", ["channel"])
SURVEY_ANSWERS = Counter("careline_survey_answers_total", "Survey answers stored", ["question"])
SURVEYS_FINISHED = Counter(
    "careline_surveys_finished_total", "Surveys finished, by outcome", ["outcome"]
)
IDLE_RESOLVED = Counter(
    "careline_idle_conversations_resolved_total", "Silent bot chats resolved by the idle sweep"
)
EXPORT_ROWS = Counter(
    "careline_survey_export_rows_total", "Rows written by survey exports", ["format"]
)
REPORT_SECONDS = Histogram(
    "careline_survey_report_seconds",
    "Time to compute a survey report",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
