"""Prometheus metrics of the gateway (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WIDGET_CONNECTIONS = Gauge("careline_widget_connections", "Open widget WebSockets")
WIDGET_MESSAGES = Counter("careline_widget_messages_total", "Customer messages accepted")
WIDGET_ERRORS = Counter("careline_widget_errors_total", "Error frames sent, by code", ["code"])
BOT_REPLIES = Counter("careline_bot_replies_total", "Bot replies sent, by kind", ["kind"])
ESCALATIONS = Counter("careline_escalations_total", "Conversations handed to a person")
NLU_SECONDS = Histogram(
    "careline_nlu_call_seconds",
    "NLU parse calls seen from the gateway",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
NLU_FAILURES = Counter("careline_nlu_failures_total", "NLU calls that failed (incl. breaker)")
INBOX_HANDLED = Counter("careline_inbox_messages_total", "Customer messages handled by the bot")
LOGINS = Counter("careline_console_logins_total", "Console login attempts, by outcome", ["outcome"])
AGENT_CONNECTIONS = Gauge("careline_agent_connections", "Open agent console WebSockets")
AGENT_MESSAGES = Counter("careline_agent_messages_total", "Messages sent by agents to customers")
SLA_BREACHES = Counter(
    "careline_sla_breaches_total", "First-response SLA breaches, by severity", ["severity"]
)
SLA_WAITING = Gauge("careline_sla_timers", "Escalated chats with a running first-response SLA")
