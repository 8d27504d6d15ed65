"""The gateway bench's clients and phases: a widget visitor against careline, a REST client
against stock `rasa run`, and one closed-loop phase of N of them with its server metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from common import (  # bench/common.py (this folder is on sys.path when run as a script)
    RssSampler,
    cpu_seconds,
    percentile,
    say,
)
from gateway_workload import (
    LOCALE,
    SETTLE_S,
    WARMUP_MESSAGES,
    ClientSpec,
    PhaseResult,
    Recorder,
    listen_overflows,
    service_pids,
)

from bot.channels.widget_client import WidgetClient

# -- careline clients ------------------------------------------------------------------------

HANDOFF_GRACE_S = 3.0  # a message acknowledged after a handoff: how long to wait for an answer


class GatewayErrorFrame(Exception):
    """The gateway answered a message with an `error` frame (rate_limited, internal, ...)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def widget_reply(client: WidgetClient, cid: str, timeout: float) -> tuple[float | None, bool]:
    """Wait for the bot's answer to message `cid`; return (arrival time, handed off).

    The answer is the first bot/system message stored after ours (id > the ack's
    message_id), which also skips a late second line of an earlier turn. It may arrive
    before the ack, so messages are buffered until the ack says which id is ours.
    A message sent just as the previous turn handed the chat to a person (the hazard
    answer comes first, the handoff right after) gets no bot answer: once the handoff is
    seen and ours acknowledged, a short wait without an answer returns (None, True).
    """
    deadline = time.perf_counter() + timeout
    ack_id: int | None = None
    replies: list[tuple[int, float, str]] = []
    handed_off = False
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            if handed_off and ack_id is not None:
                return None, True
            raise TimeoutError("no reply")
        try:
            frame = await client.recv(timeout=left)
        except TimeoutError:
            continue  # the deadline check above decides: a handoff's grace, or no reply
        now = time.perf_counter()
        kind = frame.get("type")
        if kind == "error":
            raise GatewayErrorFrame(str(frame.get("code")))
        if kind == "ack" and frame.get("client_msg_id") == cid:
            ack_id = int(frame["message_id"])
        elif kind == "event":
            event = frame["event"]
            if event["kind"] == "state" and event["state"] != "BOT":
                handed_off = True
            elif event["kind"] == "message" and event["message"]["sender"] != "customer":
                msg = event["message"]
                replies.append((int(msg["id"]), now, msg["sender"]))
        if ack_id is not None:
            for mid, at, sender in replies:
                if mid > ack_id:
                    return at, handed_off or sender == "system"
            if handed_off:
                deadline = min(deadline, now + HANDOFF_GRACE_S)


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, GatewayErrorFrame):
        return f"error_frame:{exc.code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError | aiohttp.ClientConnectionError):
        return f"connection:{type(exc).__name__}"
    return f"exception:{type(exc).__name__}"


async def widget_client(
    spec: ClientSpec, rec: Recorder, *, ws_url: str, reply_timeout: float
) -> None:
    """One visitor: connect, ask its questions one after another, leave.

    A visitor handed to a person stops asking the bot (it would not answer any more);
    that is counted as a handoff, not an error.
    """
    await asyncio.sleep(spec.delay_s)
    client = WidgetClient(ws_url, locale=LOCALE)
    try:
        started = time.perf_counter()
        try:
            # WidgetClient.connect waits at most 15 s for `welcome` (its expect() default).
            welcome = await asyncio.wait_for(client.connect(), reply_timeout)
        except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            rec.error(f"connect:{error_kind(exc)}", exc)
            return
        if welcome["type"] != "welcome":
            rec.error(f"connect:error_frame:{welcome.get('code')}")
            return
        rec.connect_s.append(time.perf_counter() - started)
        for text in spec.texts:
            started = time.perf_counter()
            cid = await client.say(text)
            rec.sent += 1
            arrived, handed_off = await widget_reply(client, cid, reply_timeout)
            if arrived is not None:
                rec.reply(arrived - started)
            if handed_off:
                rec.handoffs += 1
                return
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        rec.error(f"reply:{error_kind(exc)}", exc)
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def widget_warmup(ws_url: str, questions: Sequence[str], timeout: float) -> None:
    """A few messages before measuring: first parses pay TensorFlow's tracing cost."""
    rec = Recorder(planned=WARMUP_MESSAGES)
    spec = ClientSpec(-1, 0.0, tuple(questions[:WARMUP_MESSAGES]))
    await widget_client(spec, rec, ws_url=ws_url, reply_timeout=timeout)
    if rec.errors:
        raise RuntimeError(f"careline warm-up failed: {dict(rec.errors)}")


# -- stock rasa clients ----------------------------------------------------------------------


async def rest_client(
    spec: ClientSpec,
    rec: Recorder,
    *,
    url: str,
    http: aiohttp.ClientSession,
    reply_timeout: float,
) -> None:
    """The same visitor against Rasa's REST channel: the HTTP response carries the reply."""
    await asyncio.sleep(spec.delay_s)
    sender = f"bench-{uuid.uuid4().hex[:12]}"
    timeout = aiohttp.ClientTimeout(total=reply_timeout)
    try:
        for text in spec.texts:
            started = time.perf_counter()
            rec.sent += 1
            async with http.post(
                url, json={"sender": sender, "message": text}, timeout=timeout
            ) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
            if resp.status != 200:
                rec.error(f"reply:http_{resp.status}")
                return
            if not body:
                rec.error("reply:empty")
                return
            rec.reply(time.perf_counter() - started)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        rec.error(f"reply:{error_kind(exc)}", exc)


# -- phases ----------------------------------------------------------------------------------


ClientFn = Callable[[ClientSpec, Recorder], Awaitable[None]]


async def scrape_all(urls: Sequence[str]) -> dict[str, float]:
    """careline's own counters (Prometheus text), to split latency into NLU time and the
    rest of the gateway; a failed scrape only loses this breakdown, not the run."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for url in urls:
            try:
                async with http.get(url) as resp:
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                say(f"could not scrape {url}: {exc!r}")
                continue
            for line in text.splitlines():
                name, _, value = line.rpartition(" ")
                if name.startswith("careline_") and not name.split("{")[0].endswith("_created"):
                    with contextlib.suppress(ValueError):
                        out[name] = float(value)
    return out


def metric_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counter/histogram growth during the phase (sums, counts, totals; not buckets)."""
    keep = ("_sum", "_count", "_total")
    return {
        name: round(value - before.get(name, 0.0), 6)
        for name, value in after.items()
        if name.split("{")[0].endswith(keep) and value != before.get(name, 0.0)
    }


async def _progress(label: str, rec: Recorder, started: float) -> None:
    while True:
        await asyncio.sleep(2)
        say(
            f"{label}: {len(rec.latencies_s)}/{rec.planned} replies, "
            f"{sum(rec.errors.values())} errors, {rec.handoffs} handoffs, "
            f"{time.perf_counter() - started:.0f} s"
        )


@dataclass
class Counters:
    """Cumulative counters read before and after a phase; the report shows the growth."""

    cpu: dict[str, float]
    overflows: int
    metrics: dict[str, float]

    @classmethod
    async def take(cls, cpu_roots: dict[str, int], metrics_urls: Sequence[str]) -> Counters:
        cpu = {**cpu_seconds(cpu_roots), "load generator": time.process_time()}
        return cls(cpu, listen_overflows(), await scrape_all(metrics_urls))


async def run_phase(
    system: str,
    plan: Sequence[ClientSpec],
    client_fn: ClientFn,
    sampler: RssSampler,
    timeout_s: float,
    metrics_urls: Sequence[str] = (),
    *,
    services: bool = False,
) -> PhaseResult:
    """Run every client of one (system, N) cell; bounded by a global timeout. `services`:
    the system stores in the shared PostgreSQL/Redis, whose CPU is then counted as its own."""
    await asyncio.sleep(SETTLE_S)
    n, k = len(plan), len(plan[0].texts)
    rec = Recorder(planned=n * k)
    label = f"{system} N={n}"
    say(f"{label}: starting {n} clients x {k} messages (load {os.getloadavg()[0]:.2f})")
    load_before = os.getloadavg()
    cpu_roots = {**sampler.roots, **(service_pids() if services else {})}
    before = await Counters.take(cpu_roots, metrics_urls)
    sampler.reset()
    started = time.perf_counter()
    tasks = [asyncio.create_task(client_fn(spec, rec)) for spec in plan]
    progress = asyncio.create_task(_progress(label, rec, started))
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
        rec.error("phase_timeout")
    await asyncio.gather(*pending, return_exceptions=True)
    seconds = time.perf_counter() - started
    progress.cancel()
    result = _result(system, n, k, rec, seconds, sampler, load_before)
    after = await Counters.take(cpu_roots, metrics_urls)
    result.cpu_s = {name: round(after.cpu[name] - before.cpu[name], 2) for name in after.cpu}
    result.listen_overflows = after.overflows - before.overflows
    result.server_metrics = metric_deltas(before.metrics, after.metrics)
    say(
        f"{label}: done in {seconds:.1f} s: {result.replies} replies, "
        f"{result.error_count} errors{' ' + str(dict(rec.errors)) if rec.errors else ''}, "
        f"{rec.handoffs} handoffs"
    )
    return result


def _result(
    system: str,
    n: int,
    k: int,
    rec: Recorder,
    seconds: float,
    sampler: RssSampler,
    load_before: tuple[float, float, float],
) -> PhaseResult:
    ms = [s * 1000 for s in rec.latencies_s]
    connect = [s * 1000 for s in rec.connect_s]
    return PhaseResult(
        system=system,
        n=n,
        messages_per_client=k,
        planned=rec.planned,
        sent=rec.sent,
        replies=len(ms),
        errors=dict(rec.errors),
        handoffs=rec.handoffs,
        seconds=seconds,
        msg_per_s=len(ms) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms) if ms else None,
        max_ms=max(ms) if ms else None,
        peak_rss_mb=sampler.peaks_mb(),
        load_before=load_before,
        load_after=os.getloadavg(),
        latencies_ms=[round(v, 2) for v in ms],
        connect_p50_ms=percentile(connect, 50),
        connect_p99_ms=percentile(connect, 99),
        error_samples=dict(rec.samples),
    )
