"""careline settings: the `careline:` section of config.yml plus secrets from the environment.

Validated once at startup so a typo fails fast with a message that names the bad key, instead
of surfacing as a strange runtime error hours later. Rasa's own keys in the same file are left
to Rasa.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nlu.files import parse_yaml, read_yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ENV = "CARELINE_CONFIG"


class SettingsError(Exception):
    """A configuration problem, worded for the operator who has to fix it."""


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt knob must not silently fall back to its default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusinessSettings(_Section):
    name: str = Field(min_length=1)
    hotline: str = Field(min_length=1)
    website: str = Field(min_length=1)
    hours: str = Field(min_length=1)
    warranty_months: int = Field(ge=0, le=120)
    return_days: int = Field(ge=0, le=365)

    def placeholders(self) -> dict[str, str]:
        """Values for the {placeholders} used in data/responses.yml."""
        return {
            "business_name": self.name,
            "hotline": self.hotline,
            "website": self.website,
            "hours": self.hours,
            "warranty_months": str(self.warranty_months),
            "return_days": str(self.return_days),
        }


class NLUClientSettings(_Section):
    timeout_s: float = Field(gt=0, le=60)
    retries: int = Field(ge=0, le=5)
    retry_backoff_s: float = Field(ge=0, le=10)
    breaker_failures: int = Field(ge=1, le=1000)
    breaker_reset_s: float = Field(gt=0, le=3600)


class NLUSettings(_Section):
    url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=5005, ge=1, le=65535)
    venv: Path = Path(".venv-nlu")
    data: Path = Path("data/nlu")
    heldout: Path = Path("data/heldout")
    responses: Path = Path("data/responses.yml")
    models: Path = Path("models")
    max_body_bytes: int = Field(default=16384, ge=256, le=10_000_000)
    max_text_chars: int = Field(default=2000, ge=1, le=100_000)
    startup_timeout_s: float = Field(default=180, gt=0)
    client: NLUClientSettings


class DatabaseSettings(_Section):
    # DATABASE_URL overrides. sqlite+aiosqlite:///relative/path is relative to config.yml.
    url: str = "sqlite+aiosqlite:///var/careline.db"
    pg_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    echo: bool = False


class RedisSettings(_Section):
    # REDIS_URL overrides; null means the embedded in-process stand-in (one process only).
    url: str | None = None
    stream_maxlen: int = Field(default=2000, ge=100)  # events kept per conversation stream
    prefix: str = Field(default="cl", pattern=r"^[A-Za-z0-9_.-]{1,40}$")  # of every key
    max_connections: int = Field(default=200, ge=4, le=10_000)  # per replica; callers wait
    # A closed conversation's event stream and bot state expire after this (its transcript
    # stays in SQL); longer than conversation.reopen_window_hours, so a reopened chat resumes.
    closed_ttl_s: int = Field(default=26 * 3600, ge=1)


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None  # how browsers reach us; default http://host:port
    # Connections the kernel holds before we accept them. A burst of visitors (a campaign, a
    # replica failing over) beyond it has its SYNs dropped and retried after 1, 3, 7 s;
    # the kernel caps it at net.core.somaxconn.
    listen_backlog: int = Field(default=4096, ge=1, le=65535)
    # Load balancers whose X-Forwarded-For / Forwarded headers name the client (CIDRs).
    trusted_proxies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _proxies_parse(self) -> GatewaySettings:
        from bot.core.client_address import parse_networks

        parse_networks(self.trusted_proxies)  # ValueError names the bad entry
        return self


class WidgetSettings(_Section):
    allowed_origins: list[str] = Field(default_factory=list)  # plus the gateway's own origin
    max_text_chars: int = Field(default=2000, ge=1, le=20_000)
    max_frame_bytes: int = Field(default=16_384, ge=256, le=1_000_000)
    rate_per_connection: float = Field(default=2.0, gt=0)  # messages/s sustained
    burst_per_connection: int = Field(default=8, ge=1)
    rate_per_ip_per_minute: int = Field(default=120, ge=1)
    max_connections_per_ip: int = Field(default=20, ge=1)
    visitor_token_days: float = Field(default=180, gt=0, le=3650)  # unused this long: new visitor


class ConversationSettings(_Section):
    answer_threshold: float = Field(default=0.6, ge=0, le=1)  # below: clarify, don't answer
    clarify_min_confidence: float = Field(default=0.15, ge=0, le=1)  # option worth offering
    misses_before_handoff: int = Field(default=2, ge=1)
    reopen_window_hours: float = Field(default=24, ge=0)
    # Inbox: a message a crashed replica left unanswered is taken over after this long.
    claim_idle_s: float = Field(default=15, gt=0, le=3600)
    sweep_every_s: float = Field(default=15, gt=0, le=3600)  # re-queue unanswered (SQL check)
    # Conversations answered concurrently per replica: a turn mostly waits (NLU, SQL), and
    # concurrent turns share NLU batches, so fewer slots than this leave the cores idle.
    workers: int = Field(default=32, ge=1, le=256)


Severity = Literal["critical", "high", "normal", "low"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SLA_FIRST_RESPONSE_S: dict[Severity, float] = {
    "critical": 60, "high": 300, "normal": 900, "low": 3600,
}  # fmt: skip

_TRIAGE_INTENT_QUEUE = {
    "hazard_explosion": "safety",
    "hazard_fire_smoke": "safety",
    "hazard_swollen_battery": "safety",
    "hazard_electric_shock": "safety",
    "fault_touch_screen": "technical",
    "fault_battery_drain": "technical",
    "fault_overheating": "technical",
    "fault_wont_turn_on": "technical",
    "fault_camera": "technical",
    "fault_connectivity": "technical",
    "fault_speaker": "technical",
    "warranty_claim": "technical",
    "warranty_policy": "technical",
    "payment_problem": "billing",
    "installment": "billing",
    "invoice_request": "billing",
    "order_status": "orders",
    "cancel_order": "orders",
    "delivery_info": "orders",
    "return_exchange": "orders",
}
_TRIAGE_INTENT_SEVERITY: dict[str, Severity] = {
    "fault_wont_turn_on": "high",
    "complain_staff": "high",
    "fault_touch_screen": "normal",
    "fault_battery_drain": "normal",
    "fault_overheating": "normal",
    "fault_camera": "normal",
    "fault_connectivity": "normal",
    "fault_speaker": "normal",
    "warranty_claim": "normal",
    "return_exchange": "normal",
    "payment_problem": "normal",
    "request_human": "normal",
}


class SeverityModelSettings(_Section):
    """How triage reads the learned severity model's scores (chosen on validation folds of
    the triage corpus: `careline triage tune`, docs/BENCHMARKS.md)."""

    # P(critical) from which the model alone makes a message critical ...
    critical_at: float = Field(default=0.4, gt=0, le=1)
    # ... when the lexicon read its hazard words as an idiom, a negation or a question
    critical_explained_at: float = Field(default=0.9, gt=0, le=1)
    # P(critical) from which (below critical_at) the bot asks the quick safety question
    ask_at: float = Field(default=0.25, gt=0, le=1)
    # a non-critical severity or a queue of the model counts from this score
    severity_min: float = Field(default=0.4, ge=0, le=1)
    queue_min: float = Field(default=0.4, ge=0, le=1)
    # seconds the customer has to answer the safety question before it goes to safety
    ask_timeout_s: float = Field(default=120, gt=0, le=3600)
    context_messages: int = Field(default=3, ge=0, le=4)  # earlier messages read together

    @model_validator(mode="after")
    def _ordered(self) -> SeverityModelSettings:
        if self.ask_at > self.critical_at:
            raise ValueError(f"ask_at ({self.ask_at}) must not exceed critical_at")
        return self


class TriageSettings(_Section):
    """Severity triage (handoff/): queues, intent routing and thresholds.

    Words and idioms live in the lexicon file; only numbers and routing live here.
    An intent routed to `safety_queue` is a hazard intent.
    """

    lexicon: Path = Path("data/triage/lexicon.yml")
    queues: list[str] = Field(
        default_factory=lambda: ["safety", "technical", "billing", "orders", "general"],
        min_length=1,
    )
    safety_queue: str = "safety"  # every critical result goes here
    default_queue: str = "general"  # when neither intent nor topic names a queue
    intent_queue: dict[str, str] = Field(default_factory=lambda: dict(_TRIAGE_INTENT_QUEUE))
    intent_severity: dict[str, Severity] = Field(  # intents not listed: low
        default_factory=lambda: dict(_TRIAGE_INTENT_SEVERITY)
    )
    hazard_intent_min_confidence: float = Field(default=0.5, ge=0, le=1)
    # When the lexicon read the hazard words as an idiom, a negation or a question, a hazard
    # intent must be at least this sure to make the message critical anyway.
    hazard_intent_explained_min_confidence: float = Field(default=0.9, ge=0, le=1)
    intent_min_confidence: float = Field(default=0.5, ge=0, le=1)  # non-hazard intents
    hazard_question_severity: Severity = "normal"  # "có bị nổ không?": asked, not happening
    misses_raise_at: int = Field(default=2, ge=1)  # bot misses in a row that raise a level
    exclamations_raise_at: int = Field(default=3, ge=1)  # "!!!" counts as shouting
    caps_min_letters: int = Field(default=12, ge=1)  # shorter messages are never "ALL CAPS"
    caps_ratio: float = Field(default=0.8, gt=0, le=1)  # share of upper-case letters
    repeat_window: int = Field(default=3, ge=0)  # earlier messages checked for a repeat
    raise_cap: Literal["normal", "high"] = "high"  # frustration never raises above this
    model: SeverityModelSettings = Field(default_factory=SeverityModelSettings)
    # Intents whose intent_severity decides instead of the learned model's non-critical
    # reading: explicit requests (a person, a complaint about staff).
    intent_severity_with_model: list[str] = Field(
        default_factory=lambda: ["request_human", "complain_staff"]
    )

    @model_validator(mode="after")
    def _queues_exist(self) -> TriageSettings:
        if len(set(self.queues)) != len(self.queues):
            raise ValueError(f"queues: duplicate queue names in {self.queues}")
        known = set(self.queues)
        named = {"safety_queue": self.safety_queue, "default_queue": self.default_queue}
        named.update({f"intent_queue.{i}": q for i, q in self.intent_queue.items()})
        bad = [f"{where} -> {q!r}" for where, q in named.items() if q not in known]
        if bad:
            raise ValueError(
                f"unknown queue in {', '.join(bad)}; queues are {self.queues} "
                "(add it to careline.triage.queues or fix the name)"
            )
        return self


class AuthSettings(_Section):
    """Console accounts and sessions (bot/auth/)."""

    session_idle_hours: float = Field(default=12, gt=0, le=24 * 30)
    login_max_failures: int = Field(default=5, ge=1)  # per username, per window
    login_max_failures_per_ip: int = Field(default=30, ge=1)
    login_window_s: int = Field(default=900, ge=10)
    cookie_secure: Literal["auto", "always", "never"] = "auto"  # auto: production or HTTPS
    # Embedded demo only (never with CARELINE_ENV=production): with no accounts at all, the
    # first start creates `admin` with a random password and prints it once.
    demo_admin: bool = True


class OpeningHours(_Section):
    """When people answer chats; outside it the bot offers a callback instead of a wait."""

    timezone: str = "Asia/Ho_Chi_Minh"
    start: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(default="21:30", pattern=r"^([01]\d|2[0-4]):[0-5]\d$")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))

    @model_validator(mode="after")
    def _known_zone(self) -> OpeningHours:
        try:
            ZoneInfo(self.timezone)
        except Exception:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        return self


class QueueStaffing(_Section):
    """Who can answer a queue, and when: what a customer in danger is told follows this."""

    hours: Literal["opening_hours", "always"] = "opening_hours"  # "always": staffed 24/7
    hotline: str | None = None  # a phone line that answers for this queue around the clock


class HandoffSettings(_Section):
    """Human handoff: first-response SLAs, presence, opening hours (handoff/)."""

    sla_first_response_s: dict[Severity, float] = Field(
        default_factory=lambda: dict(_SLA_FIRST_RESPONSE_S)
    )
    sla_check_every_s: float = Field(default=1.0, gt=0, le=60)
    presence_ttl_s: float = Field(default=60, ge=5)  # an agent without heartbeat goes offline
    opening_hours: OpeningHours = OpeningHours()
    # Re-tell waiting customers their place when it changes (as a live status, not a message).
    position_updates: bool = True
    # Per queue (queues not listed: opening_hours, no hotline).
    staffing: dict[str, QueueStaffing] = Field(default_factory=dict)
    # How often each replica checks Redis against SQL (queues, holds, SLA clocks) and puts
    # back what was lost; also at startup.
    reconcile_every_s: float = Field(default=10.0, ge=0.5, le=3600)

    @model_validator(mode="after")
    def _all_severities(self) -> HandoffSettings:
        missing = {"critical", "high", "normal", "low"} - set(self.sla_first_response_s)
        if missing:
            raise ValueError(f"sla_first_response_s: missing {', '.join(sorted(missing))}")
        if any(v <= 0 for v in self.sla_first_response_s.values()):
            raise ValueError("sla_first_response_s: every deadline must be > 0 seconds")
        return self


class SurveySettings(_Section):
    """The micro-survey at close (surveys/): CES 1-7, CSAT 1-5, optional NPS, a comment."""

    enabled: bool = True
    expiry_hours: float = Field(default=24, gt=0, le=24 * 30)  # later answers: polite refusal
    nps_enabled: bool = False  # the 0-10 "would you recommend us" question
    ask_comment: bool = True
    comment_max_chars: int = Field(default=1000, ge=1, le=10_000)
    # A bot-only conversation the customer left without ending it is resolved after this
    # much silence (and gets the survey); 0 turns the idle sweep off.
    idle_close_minutes: float = Field(default=30, ge=0, le=7 * 24 * 60)
    sweep_every_s: float = Field(default=60, gt=0, le=3600)  # expiry + idle checks
    repeat_contact_days: float = Field(default=7, gt=0, le=90)  # first-contact resolution
    report_timezone: str = "Asia/Ho_Chi_Minh"  # report dates and daily trend buckets

    @model_validator(mode="after")
    def _known_timezone(self) -> SurveySettings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.report_timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"report_timezone: unknown time zone {self.report_timezone!r}") from e
        return self


class KpiTargets(_Section):
    """Managers' targets, shown as attainment on the dashboard; null hides a target."""

    csat_pct: float | None = Field(default=80, ge=0, le=100)  # share of 4-5 of 5
    ces_mean: float | None = Field(default=5.5, ge=1, le=7)
    fcr_pct: float | None = Field(default=70, ge=0, le=100)
    containment_pct: float | None = Field(default=None, ge=0, le=100)
    response_rate_pct: float | None = Field(default=None, ge=0, le=100)
    nps: float | None = Field(default=None, ge=-100, le=100)


# -- Telegram channel -----------------------------------------------------------------


class TelegramOutboxSettings(_Section):
    """Outbound delivery to the Bot API: retries never give up (an outage delays, never loses),
    backoff doubles from `retry_base_s` up to `retry_max_s`."""

    retry_base_s: float = Field(default=1.0, gt=0, le=60)
    retry_max_s: float = Field(default=300.0, gt=0, le=3600)
    send_timeout_s: float = Field(default=10.0, gt=0, le=120)  # per Bot API call
    concurrency: int = Field(default=16, ge=1, le=256)  # conversations delivered at once
    claim_idle_s: float = Field(default=60.0, gt=0, le=3600)  # a dead replica's deliveries
    sweep_every_s: float = Field(default=30.0, gt=0, le=3600)  # SQL check for lost wake-ups
    sweep_settle_s: float = Field(default=10.0, ge=0, le=3600)  # ... of messages this old
    poll_s: float = Field(default=0.5, gt=0, le=60)  # how often due retries are released


class TelegramSettings(_Section):
    """The Telegram channel. Token and webhook secret come only from the environment
    (TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET); `off` lets `make run` work without them."""

    mode: Literal["off", "webhook", "polling"] = "off"
    webhook_path: str = Field(default="/telegram/webhook", pattern=r"^/[A-Za-z0-9/_.-]{1,100}$")
    public_base_url: str | None = Field(  # where Telegram reaches us; default gateway.public_url
        default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$"
    )
    set_webhook: bool = True  # call setWebhook at startup (off: it is managed elsewhere)
    api_base_url: str = Field(  # a local Bot API server (or the tests' fake) goes here
        default="https://api.telegram.org", pattern=r"^https?://[^\s]+$"
    )
    texts: Path = Path("data/telegram.yml")  # command replies (/start, /help, /lang) in vi/en
    dedup_ttl_hours: float = Field(default=48, gt=0, le=24 * 30)  # Telegram retries for 24 h
    max_text_chars: int = Field(default=4096, ge=1, le=100_000)  # longer input is truncated
    rate_per_chat_per_minute: int = Field(default=30, ge=1)  # more is flooding: not stored
    outbox: TelegramOutboxSettings = TelegramOutboxSettings()

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare `off` (also in CARELINE__TELEGRAM__MODE=off) as false."""
        return "off" if value is False else value


class Settings(_Section):
    business: BusinessSettings
    nlu: NLUSettings
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    gateway: GatewaySettings = GatewaySettings()
    widget: WidgetSettings = WidgetSettings()
    conversation: ConversationSettings = ConversationSettings()
    triage: TriageSettings = TriageSettings()
    auth: AuthSettings = AuthSettings()
    handoff: HandoffSettings = HandoffSettings()
    surveys: SurveySettings = SurveySettings()
    kpi_targets: KpiTargets = KpiTargets()
    telegram: TelegramSettings = TelegramSettings()

    @model_validator(mode="after")
    def _staffed_queues_exist(self) -> Settings:
        unknown = sorted(set(self.handoff.staffing) - set(self.triage.queues))
        if unknown:
            raise ValueError(f"handoff.staffing: {unknown} are not in triage.queues")
        return self

    # Not from the file: where the file lives, so relative paths resolve against the project.
    root: Path = Field(default=PROJECT_ROOT, exclude=True)
    config_path: Path = Field(default=PROJECT_ROOT / "config.yml", exclude=True)

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the directory of config.yml."""
        return p if p.is_absolute() else self.root / p

    @cached_property
    def nlu_python(self) -> Path:
        return self.path(self.nlu.venv) / "bin" / "python"


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        key = ".".join(["careline", *(str(p) for p in e["loc"])])
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}{got}")
    return "\n".join(lines)


ENV_PREFIX = "CARELINE__"


def _apply_env(section: dict[str, Any], env: Mapping[str, str]) -> None:
    """Environment overrides (12-factor style).

    Well-known endpoints have their usual names (NLU_URL, DATABASE_URL, REDIS_URL); any other
    knob can be set as CARELINE__<SECTION>__<KEY>=<YAML value>, e.g.
    CARELINE__CONVERSATION__CLAIM_IDLE_S=5. Validation then applies as for the file.
    """
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = section
        for part in path[:-1]:
            child = node.get(part)
            node = node.setdefault(part, {}) if not isinstance(child, dict) else child
        node[path[-1]] = parse_yaml(value) if value.strip() else None
    if env.get("NLU_URL"):
        section.setdefault("nlu", {})["url"] = env["NLU_URL"]
    if env.get("DATABASE_URL"):
        section.setdefault("database", {})["url"] = env["DATABASE_URL"]
    if env.get("REDIS_URL"):
        section.setdefault("redis", {})["url"] = env["REDIS_URL"]
    if env.get("CARELINE_REDIS_PREFIX"):
        section.setdefault("redis", {})["prefix"] = env["CARELINE_REDIS_PREFIX"]


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate config.yml; raise SettingsError naming the offending key."""
    env = os.environ if env is None else env
    config_path = Path(path or env.get(CONFIG_ENV) or PROJECT_ROOT / "config.yml").resolve()
    try:
        raw = read_yaml(config_path) or {}
    except FileNotFoundError as e:
        raise SettingsError(f"{config_path}: configuration file not found") from e
    except yaml.YAMLError as e:
        raise SettingsError(f"{config_path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("careline"), dict):
        raise SettingsError(f"{config_path}: missing the top-level 'careline:' section")
    section = dict(raw["careline"])
    _apply_env(section, env)
    try:
        return Settings.model_validate(
            {**section, "root": config_path.parent, "config_path": config_path}
        )
    except ValidationError as e:
        raise SettingsError(_format_errors(e, str(config_path))) from None
