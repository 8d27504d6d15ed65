"""Gateway-side client for the NLU service (ours or a stock `rasa run --enable-api`).

Never imports rasa. Every failure reaches the caller as a typed error it can turn into a
graceful reply: `NLUUnavailable` (down, slow, overloaded, circuit open: hand the customer to
a person) or `NLURejected` (the service refused our request: a bug on our side, never
retried). Retries are few and budgeted so a sick service is not hammered by them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from nlu.breaker import BreakerState, CircuitBreaker

if TYPE_CHECKING:  # the client also runs where the gateway's settings are not installed
    from bot.core.settings import Settings


MAX_IN_FLIGHT = 2  # parse requests out at once; what comes meanwhile waits to go as a batch
MAX_BATCH = 64  # texts per /model/parse/batch (the service's limit)


class NLUError(Exception):
    """Base class for NLU client errors."""


class NLUUnavailable(NLUError):
    """The service cannot answer now (down, timeout, 5xx, overloaded, or circuit open)."""

    def __init__(self, reason: str, retry_in: float = 0.0, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_in = retry_in
        self.retryable = retryable  # False when the service said when to come back


class NLURejected(NLUError):
    """The service answered 4xx: our request was wrong. Retrying cannot help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"NLU service rejected the request ({status}): {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class IntentScore:
    name: str
    confidence: float


@dataclass(frozen=True)
class SeverityReading:
    """The NLU service's learned severity verdict (`careline.severity/queue/scores`)."""

    severity: str
    queue: str
    severity_scores: dict[str, float]
    queue_scores: dict[str, float]

    @property
    def critical(self) -> float:
        """How likely the message (with its context) reports danger, 0-1."""
        return self.severity_scores.get("critical", 0.0)

    @classmethod
    def from_json(cls, extra: Any) -> SeverityReading | None:
        """None when absent (stock Rasa, an older model) or malformed: triage then runs on
        the lexicon and the intent alone, as it always could."""
        if not isinstance(extra, dict) or not isinstance(extra.get("scores"), dict):
            return None
        try:
            scores = extra["scores"]
            return cls(
                str(extra["severity"]),
                str(extra["queue"]),
                {str(k): float(v) for k, v in scores["severity"].items()},
                {str(k): float(v) for k, v in scores["queue"].items()},
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ParseResult:
    """The parts of Rasa's parse JSON the gateway uses, plus the raw dict for the rest."""

    text: str
    intent: str | None
    confidence: float
    ranking: tuple[IntentScore, ...]
    entities: tuple[dict[str, Any], ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def language(self) -> str | None:
        """Language detected by our service (absent when talking to stock Rasa)."""
        extra = self.raw.get("careline")
        return extra.get("language") if isinstance(extra, dict) else None

    @property
    def severity(self) -> SeverityReading | None:
        """The learned severity verdict (our service only)."""
        return SeverityReading.from_json(self.raw.get("careline"))

    @classmethod
    def from_json(cls, data: Any) -> ParseResult:
        try:
            intent = data.get("intent") or {}
            ranking = tuple(
                IntentScore(str(r["name"]), float(r["confidence"]))
                for r in data.get("intent_ranking") or []
            )
            return cls(
                text=str(data.get("text", "")),
                intent=intent.get("name"),
                confidence=float(intent.get("confidence") or 0.0),
                ranking=ranking,
                entities=tuple(data.get("entities") or []),
                raw=data,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise NLUUnavailable(f"NLU service sent a malformed parse result: {e}") from e


class RetryBudget:
    """Retries may add at most `ratio` extra load (token bucket, as in Finagle).

    Each request deposits `ratio` tokens; each retry spends one. A burst of failures thus
    cannot multiply traffic to a service that is already struggling.
    """

    def __init__(self, ratio: float = 0.2, reserve: float = 3.0) -> None:
        self.ratio = ratio
        self.cap = max(reserve, 10.0)
        self.tokens = reserve

    def deposit(self) -> None:
        self.tokens = min(self.cap, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class NLUClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 3.0,
        retries: int = 1,
        retry_backoff_s: float = 0.1,
        breaker: CircuitBreaker | None = None,
        budget: RetryBudget | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.breaker = breaker or CircuitBreaker()
        self.budget = budget or RetryBudget()
        self._session = session
        self._owns_session = session is None
        # Parses waiting to go out together (see parse), and the requests carrying them.
        self._batching = True
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._senders: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> NLUClient:
        c = settings.nlu.client
        url = base_url or settings.nlu.url or f"http://{settings.nlu.host}:{settings.nlu.port}"
        return cls(
            url,
            timeout_s=c.timeout_s,
            retries=c.retries,
            retry_backoff_s=c.retry_backoff_s,
            breaker=CircuitBreaker(c.breaker_failures, c.breaker_reset_s),
        )

    @property
    def breaker_state(self) -> BreakerState:
        return self.breaker.state

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        for task in list(self._senders):
            task.cancel()
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> NLUClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def parse(
        self, text: str, message_id: str | None = None, context: Sequence[str] = ()
    ) -> ParseResult:
        """Parse one message. Raises NLUUnavailable or NLURejected, never anything else.

        `context`: the customer's earlier messages, oldest first, which our service's severity
        model reads with this one (a stock Rasa server ignores the field).

        Concurrent parses share requests: at most `MAX_IN_FLIGHT` are out at a time, and what
        is asked meanwhile goes out as one `/model/parse/batch` (a lone parse goes at once)."""
        body: dict[str, Any] = {"text": text}
        if message_id is not None:
            body["message_id"] = message_id
        if context:
            body["context"] = list(context)
        if not self._batching or self.breaker.state is not BreakerState.CLOSED:
            # On its own while the service is in doubt: a probe that its caller abandons
            # must be abandoned with it, or the circuit would wait on it.
            return ParseResult.from_json(await self._call("POST", "/model/parse", body))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((body, done))
        if self._in_flight < MAX_IN_FLIGHT:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send_waiting())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        return ParseResult.from_json(await asyncio.shield(done))

    async def _send_waiting(self) -> None:
        """Send what is waiting, a batch at a time, until nothing is."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._send(batch)
        finally:
            self._in_flight -= 1

    async def _send(self, batch: list[tuple[dict[str, Any], asyncio.Future[Any]]]) -> None:
        results: list[Any] | None
        try:
            if len(batch) == 1:
                results = [await self._call("POST", "/model/parse", batch[0][0])]
            else:
                texts = [{k: v for k, v in body.items() if k != "message_id"} for body, _ in batch]
                data = await self._call("POST", "/model/parse/batch", {"texts": texts})
                results = data.get("results") if isinstance(data, dict) else None
                if not isinstance(results, list) or len(results) != len(batch):
                    raise NLUUnavailable("NLU service sent a malformed batch result")
        except NLURejected as e:
            if len(batch) > 1:
                if e.status in (404, 405):  # a stock Rasa server: no batch route
                    self._batching = False
                for one in batch:  # each on its own: only a message refused is refused
                    await self._send([one])
                return
            _fail(batch, e)
        except (NLUUnavailable, asyncio.CancelledError) as e:
            _fail(batch, e if isinstance(e, NLUUnavailable) else NLUUnavailable("cancelled"))
            if isinstance(e, asyncio.CancelledError):
                raise
        else:
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)

    async def ready(self) -> bool:
        """True when the service reports a loaded model (probe; does not touch the breaker)."""
        try:
            async with self._session_or_new().get(
                self.base_url + "/readyz", timeout=self.timeout
            ) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        if not self.breaker.allow():
            raise NLUUnavailable("circuit open: NLU service failing", self.breaker.retry_in())
        self.budget.deposit()
        attempt = 0
        while True:
            try:
                result = await self._once(method, path, body)
            except asyncio.CancelledError:
                self.breaker.abandon()  # a cancelled probe must not hold the circuit open
                raise
            except NLURejected:
                self.breaker.record_success()  # it answered: the service itself is fine
                raise
            except NLUUnavailable as e:
                if e.retryable and attempt < self.retries and self.budget.try_spend():
                    attempt += 1
                    await asyncio.sleep(self.retry_backoff_s * attempt)
                    continue
                self.breaker.record_failure()
                raise
            self.breaker.record_success()
            return result

    async def _once(self, method: str, path: str, body: dict[str, Any]) -> Any:
        started = time.monotonic()
        try:
            async with self._session_or_new().request(
                method, self.base_url + path, json=body, timeout=self.timeout
            ) as r:
                payload = await r.read()
                status = r.status
                retry_after = r.headers.get("Retry-After")
        except TimeoutError as e:
            took = time.monotonic() - started
            raise NLUUnavailable(f"NLU service timed out after {took:.1f} s") from e
        except aiohttp.ClientError as e:
            raise NLUUnavailable(f"NLU service unreachable: {e}") from e
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            data = None
        if 200 <= status < 300:
            if data is None:
                raise NLUUnavailable("NLU service answered with a non-JSON body")
            return data
        message = (
            data.get("message")
            if isinstance(data, dict)
            else payload[:200].decode("utf-8", "replace")
        )
        if status == 503:
            raise NLUUnavailable(
                f"NLU service busy or not ready: {message}",
                _seconds(retry_after) if retry_after else 0.0,
                retryable=not retry_after,
            )
        if 400 <= status < 500:
            raise NLURejected(status, str(message))
        raise NLUUnavailable(f"NLU service error {status}: {message}")


def _fail(batch: list[tuple[dict[str, Any], asyncio.Future[Any]]], error: NLUError) -> None:
    for _, done in batch:
        if not done.done():
            done.set_exception(error)


def _seconds(value: str) -> float:
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0
