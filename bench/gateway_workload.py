"""The gateway bench's workload and measurement: the FAQ questions each simulated visitor
asks, the staggered load plan, the latency recorder and the per-phase result record.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import (  # bench/common.py (this folder is on sys.path when run as a script)
    proc_table,
)

from bot.conversation.content import Content
from bot.core.settings import Settings
from nlu.datasets import load_rasa_nlu

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PEER_CACHE = Path("/tmp/careline-bench-peer")
PEER_RECIPE = "peer/1"  # bump when the stock project layout below changes
# The peers' names in the report; the short form names them in the ratio rows.
STOCK = "stock rasa run"
STOCK_SQL = "stock rasa run + SQLTrackerStore"
PEERS = {STOCK: "stock", STOCK_SQL: "stock-sql"}
WARMUP_MESSAGES = 5
SETTLE_S = 3.0  # between phases: let the previous phase's sockets close and queues drain
LOCALE = "vi"
# Rate limits the bench must lift: every simulated visitor shares 127.0.0.1, and each sends
# its next message the moment the last is answered, faster than the 2 a second allowed to
# a person's widget (the stock peer limits nothing).
BENCH_LIMITS = {
    "CARELINE__WIDGET__RATE_PER_IP_PER_MINUTE": "100000000",
    "CARELINE__WIDGET__MAX_CONNECTIONS_PER_IP": "1000000",
    "CARELINE__WIDGET__RATE_PER_CONNECTION": "1000000",
    "CARELINE__WIDGET__BURST_PER_CONNECTION": "1000000",
}


def load_content(settings: Settings) -> Content:
    return Content.load(
        settings.path(settings.nlu.responses),
        settings.root / "data" / "intents.yml",
        settings.business.placeholders(),
    )


# -- load plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    index: int
    delay_s: float  # start offset: clients arrive staggered, not as one thundering herd
    texts: tuple[str, ...]


def faq_questions(settings: Settings) -> list[str]:
    """Held-out texts (never trained on) of intents the bot answers itself.

    Escalating intents are left out: a conversation handed to a person gets no more bot
    replies, which would measure the handoff policy, not the gateway.
    """
    content = load_content(settings)
    examples = load_rasa_nlu(settings.path(settings.nlu.heldout))
    texts = [
        ex.text
        for ex in examples
        if (info := content.intents.get(ex.intent)) is not None and info.action == "answer"
    ]
    if not texts:
        raise SystemExit(f"no answerable held-out examples in {settings.nlu.heldout}")
    return texts


def build_plan(questions: Sequence[str], n: int, k: int, stagger_s: float, seed: int) -> list:
    """The same clients and texts for both systems, so the comparison is like for like."""
    pool = list(questions)
    random.Random(seed).shuffle(pool)
    return [
        ClientSpec(i, i * stagger_s / n, tuple(pool[(i * k + j) % len(pool)] for j in range(k)))
        for i in range(n)
    ]


# -- measurement -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """What the clients of one phase observed."""

    planned: int
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    handoffs: int = 0
    connect_s: list[float] = field(default_factory=list)  # hello -> welcome (careline)
    samples: dict[str, str] = field(default_factory=dict)  # one message per error kind

    def reply(self, seconds: float) -> None:
        self.latencies_s.append(seconds)

    def error(self, kind: str, exc: BaseException | None = None) -> None:
        self.errors[kind] += 1
        if exc is not None:
            self.samples.setdefault(kind, f"{type(exc).__name__}: {exc}"[:300])


def service_pids() -> dict[str, int]:
    """The shared PostgreSQL and Redis servers (their CPU is part of careline's cost; other
    users of them are counted too, so read it as an upper bound)."""
    names = {"postgres": "postgres", "redis-server": "redis"}
    found: dict[str, int] = {}
    for pid, (ppid, _) in proc_table().items():
        comm = _comm(pid)
        if comm in names and _comm(ppid) != comm:  # the server itself, not its backends
            found.setdefault(names[comm], pid)
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full
    (TcpExt ListenOverflows, machine-wide). Such a client retries its SYN after 1, 3, 7, 15 s
    ... while the server may sit idle: a latency tail that is not the server's CPU."""
    with open("/proc/net/netstat", encoding="ascii") as fh:
        lines = [line.split() for line in fh if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


@dataclass
class PhaseResult:
    system: str
    n: int
    messages_per_client: int
    planned: int
    sent: int
    replies: int
    errors: dict[str, int]
    handoffs: int
    seconds: float
    msg_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    peak_rss_mb: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    latencies_ms: list[float] = field(repr=False)
    connect_p50_ms: float | None = None  # careline: hello -> welcome
    connect_p99_ms: float | None = None
    error_samples: dict[str, str] = field(default_factory=dict)
    listen_overflows: int = 0  # machine-wide, during the phase
    server_metrics: dict[str, float] = field(default_factory=dict)  # Prometheus deltas
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU time used during the phase

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())
