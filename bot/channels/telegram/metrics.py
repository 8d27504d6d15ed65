"""Prometheus metrics of the Telegram channel (served at the gateway's /metrics with the rest;
kept here so the channel's counters live next to the code that moves them)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TELEGRAM_UPDATES = Counter(
    "careline_telegram_updates_total",
    "Telegram updates received, by outcome (accepted, duplicate, busy, failed, forged, invalid,"
    " rate_limited)",
    ["outcome"],
)
TELEGRAM_SENT = Counter("careline_telegram_parts_sent_total", "Message parts sent to Telegram")
TELEGRAM_SEND_ERRORS = Counter(
    "careline_telegram_send_errors_total",
    "Failed Bot API sends, by kind (retry_after, timeout, network incl. 5xx, blocked, rejected)",
    ["kind"],
)
TELEGRAM_RETRIES = Counter(
    "careline_telegram_retries_scheduled_total", "Deliveries put off for a later retry"
)
TELEGRAM_UNREACHABLE = Counter(
    "careline_telegram_unreachable_total", "Customers marked unreachable (bot blocked)"
)
TELEGRAM_DELIVERY_LAG = Histogram(
    "careline_telegram_delivery_lag_seconds",
    "From a message being stored to its last part reaching Telegram",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
