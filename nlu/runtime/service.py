"""The careline NLU service: Rasa's `POST /model/parse` contract, plus health and metrics.

NLU runtime only (Python 3.10). Run it with `careline nlu serve`, which picks the model and
starts this module inside .venv-nlu. The gateway can equally be pointed at a stock
`rasa run --enable-api` server: the request and response JSON are Rasa's.

The process answers /healthz at once and /readyz only once the model is loaded, so a
supervisor can tell "starting" from "broken". Loading runs on a worker thread; parsing runs
there too unless a batch is measured to be quick enough (50 ms by default) to run on the
event loop itself, which is faster in CPython (see nlu/batching.py). A slow model
(TensorFlow) never holds up the loop that answers health checks for longer than that.
HTTP is served by nlu/runtime/http_server.py (httptools), not aiohttp: see there for why.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from nlu.batching import MicroBatcher, Overloaded, ParseInput, Utterance
from nlu.runtime.http_server import HttpServer, Limits, Request, Response, Router
from nlu.runtime.severity_model import MAX_CONTEXT
from nlu.runtime.severity_model import OUTPUT_KEY as SEVERITY_OUTPUT
from nlu.vi.text import detect_language

log = logging.getLogger("careline.nlu.service")

RASA_VERSION = "3.6.21"

PARSE_SECONDS = Histogram(
    "careline_nlu_parse_seconds",
    "Time to parse one message, queueing included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUESTS = Counter("careline_nlu_requests_total", "Parse requests by HTTP status", ["status"])
REQUESTS_OK = REQUESTS.labels("200")  # looked up once: the hot path counts every parse
READY = Gauge("careline_nlu_ready", "1 once the model is loaded")
BATCH_SIZE = Histogram(
    "careline_nlu_batch_size",
    "Texts per model call (micro-batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
QUEUED = Gauge("careline_nlu_queue_depth", "Texts waiting for the model")
OVERLOADED = Counter("careline_nlu_overloaded_total", "Texts refused with 503 (queue full)")
MAX_BATCH_TEXTS = 64  # per /model/parse/batch request

try:  # Rasa depends on ujson; it encodes and decodes our bodies 3-4x faster than json
    import ujson

    def _loads(raw: bytes) -> Any:
        return ujson.loads(raw)

    def _dumps(o: Any) -> str:
        return ujson.dumps(o, ensure_ascii=False, escape_forward_slashes=False)

except ImportError:  # pragma: no cover - Rasa 3.6 always brings it

    def _loads(raw: bytes) -> Any:
        return json.loads(raw)

    def _dumps(o: Any) -> str:
        return json.dumps(o, ensure_ascii=False)


class State:
    """Mutable service state shared by the handlers."""

    def __init__(
        self,
        model_path: Path,
        max_body_bytes: int,
        max_text_chars: int,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 512,
        inline_budget_ms: float = 50.0,
        request_timeout_s: float = 30.0,
        keep_alive_s: float = 75.0,
    ) -> None:
        self.model_path = model_path
        self.request_timeout_s = request_timeout_s
        self.keep_alive_s = keep_alive_s
        self.max_body_bytes = max_body_bytes
        self.max_text_chars = max_text_chars
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.max_queue = max_queue
        self.inline_budget_ms = inline_budget_ms
        self.model: Any | None = None  # NLUModel once loaded
        self.batcher: MicroBatcher | None = None
        self.load_error: str | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlu-parse")
        self.started = time.time()


def error(status: int, reason: str, message: str) -> Response:
    """Rasa's error body shape, so clients written for Rasa read ours unchanged."""
    body = {
        "version": RASA_VERSION,
        "status": "failure",
        "message": message,
        "reason": reason,
        "details": {},
        "help": None,
        "code": status,
    }
    return _json(body, status)


def _json(o: Any, status: int = 200) -> Response:
    """A JSON response (UTF-8, non-ASCII kept as is)."""
    return Response(status, _dumps(o).encode("utf-8"))


class Handlers:
    """The service's routes, bound to its state."""

    def __init__(self, state: State) -> None:
        self.state = state

    def router(self) -> Router:
        r = Router()
        r.add("POST", "/model/parse", self.parse)
        r.add("POST", "/model/parse/batch", self.parse_batch)
        r.add("GET", "/healthz", self.healthz)
        r.add("GET", "/readyz", self.readyz)
        r.add("GET", "/version", self.version)
        r.add("GET", "/status", self.status)
        r.add("GET", "/metrics", self.metrics)
        return r

    async def parse(self, request: Request) -> Response:
        state = self.state
        if state.model is None:
            REQUESTS.labels("503").inc()
            return error(503, "ModelNotReady", "the NLU model is still loading; retry shortly")
        problem = _read_text(request.body, state.max_text_chars)
        if isinstance(problem, Response):
            REQUESTS.labels(str(problem.status)).inc()
            return problem
        text, message_id, context = problem
        started = time.monotonic()
        assert state.batcher is not None
        QUEUED.set(state.batcher.waiting + 1)
        try:
            result = await state.batcher.submit(Utterance(text, context) if context else text)
        except Overloaded as e:
            return _overloaded(e, 1)
        _annotate(state, text, result)
        PARSE_SECONDS.observe(time.monotonic() - started)
        REQUESTS_OK.inc()
        log.debug("parsed message_id=%s intent=%s", message_id, result["intent"].get("name"))
        return _json(result)

    async def parse_batch(self, request: Request) -> Response:
        """POST {"texts": [...]} -> {"results": [...]}: several parses in one round trip.

        An item is a text, or {"text": ..., "context": [...]} like a single parse's body."""
        state = self.state
        if state.model is None:
            REQUESTS.labels("503").inc()
            return error(503, "ModelNotReady", "the NLU model is still loading; retry shortly")
        body = _json_body(request.body)
        if isinstance(body, Response):
            return body
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts:
            return error(400, "BadRequest", 'body must be {"texts": ["...", ...]} (non-empty)')
        if len(texts) > MAX_BATCH_TEXTS:
            return error(413, "TooManyTexts", f"at most {MAX_BATCH_TEXTS} texts per request")
        items: list[ParseInput] = []
        for i, item in enumerate(texts):
            if isinstance(item, dict):
                context = _context_problem(item.get("context"), state.max_text_chars)
                if isinstance(context, tuple):
                    status, reason, message = context
                    return error(status, reason, f"texts[{i}]: {message}")
                text = item.get("text")
            else:
                text, context = item, []
            problem = _text_problem(text, state.max_text_chars)
            if problem:
                status, reason, message = problem
                return error(status, reason, f"texts[{i}]: {message}")
            items.append(Utterance(text, tuple(context)) if context else text)
        assert state.batcher is not None
        QUEUED.set(state.batcher.waiting + len(items))
        try:
            results = await state.batcher.submit_many(items)
        except Overloaded as e:
            return _overloaded(e, len(items))
        for item, result in zip(items, results, strict=True):
            _annotate(state, item if isinstance(item, str) else item.text, result)
        REQUESTS_OK.inc()
        return _json({"results": results})

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process is up and its event loop answers."""
        return _json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Readiness: a model is loaded and parse requests will be served."""
        state = self.state
        if state.model is not None:
            return _json({"status": "ready", "model": state.model.fingerprint})
        if state.load_error:
            return _json({"status": "failed", "error": state.load_error}, 503)
        return _json({"status": "loading"}, 503)

    async def version(self, request: Request) -> Response:
        state = self.state
        model = state.model
        return _json(
            {
                "version": RASA_VERSION,
                "minimum_compatible_version": "3.5.0",
                "model_fingerprint": model.fingerprint if model else None,
                "model_file": state.model_path.name,
            }
        )

    async def status(self, request: Request) -> Response:
        """Rasa's GET /status shape, for tools written against a stock server."""
        state = self.state
        if state.model is None:
            return error(409, "Conflict", "no model loaded yet")
        return _json(
            {
                "model_id": state.model.fingerprint,
                "model_file": str(state.model_path),
                "num_active_training_jobs": 0,
            }
        )

    async def metrics(self, request: Request) -> Response:
        return Response(200, generate_latest(), content_type=CONTENT_TYPE_LATEST)


def _annotate(state: State, text: str, result: dict) -> None:
    """Our additions live under one key so a Rasa-only client is not confused by them."""
    assert state.model is not None
    result["careline"] = {
        "language": detect_language(text),
        "model": state.model.fingerprint,
        **(result.pop(SEVERITY_OUTPUT, None) or {}),
    }


def _overloaded(e: Overloaded, n: int) -> Response:
    OVERLOADED.inc(n)
    REQUESTS.labels("503").inc()
    resp = error(503, "Overloaded", "the NLU service is at capacity; retry shortly")
    resp.headers["Retry-After"] = str(max(1, round(e.retry_after)))
    return resp


def _read_text(raw: bytes, max_chars: int) -> Any:
    """Validate a parse request body; return (text, message_id) or an error response."""
    body = _json_body(raw)
    if isinstance(body, Response):
        return body
    text = body.get("text")
    if text is None:
        return error(400, "BadRequest", "missing field 'text'")
    problem = _text_problem(text, max_chars)
    if problem:
        return error(*problem)
    message_id = body.get("message_id")
    if message_id is not None and not isinstance(message_id, str):
        return error(400, "BadRequest", "field 'message_id' must be a string")
    context = _context_problem(body.get("context"), max_chars)
    if isinstance(context, tuple):
        return error(*context)
    return text, message_id, tuple(context)


def _context_problem(context: Any, max_chars: int) -> list[str] | tuple[int, str, str]:
    """The optional `context` (earlier customer messages, oldest first) or what is wrong."""
    if context is None:
        return []
    if not isinstance(context, list) or len(context) > MAX_CONTEXT:
        return 400, "BadRequest", f"field 'context' must be a list of at most {MAX_CONTEXT} texts"
    for i, earlier in enumerate(context):
        problem = _text_problem(earlier, max_chars)
        if problem:
            return problem[0], problem[1], f"context[{i}]: {problem[2]}"
    return context


def _json_body(raw: bytes) -> Any:
    """The request's JSON object, or an error response saying what is wrong with it."""
    if not raw:
        return error(400, "BadRequest", 'empty body: send JSON like {"text": "..."}')
    try:
        body = _loads(raw)
    except (ValueError, UnicodeDecodeError):
        return error(400, "BadRequest", "body is not valid JSON (UTF-8)")
    if not isinstance(body, dict):
        return error(400, "BadRequest", 'body must be a JSON object like {"text": "..."}')
    return body


def _text_problem(text: Any, max_chars: int) -> tuple | None:
    if not isinstance(text, str):
        return 400, "BadRequest", "field 'text' must be a string"
    if not text.strip():
        return 400, "BadRequest", "field 'text' is empty"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # "\ud800" escapes decode to lone surrogates
            return 400, "BadRequest", "field 'text' is not valid Unicode (lone surrogate)"
    if len(text) > max_chars:
        return 413, "TextTooLong", f"'text' is longer than {max_chars} characters"
    return None


async def _load_model(state: State) -> None:
    """Load the model off the loop, then start serving parses; exit if it cannot load."""

    def load() -> Any:
        from nlu.runtime.model import NLUModel  # imports TensorFlow: seconds, so off-loop

        return NLUModel.load(state.model_path)

    try:
        model = await asyncio.get_running_loop().run_in_executor(state.executor, load)
        _freeze_heap()
        state.batcher = MicroBatcher(
            _observed(model.parse_many),
            state.executor,
            max_batch=state.max_batch,
            max_wait_s=state.max_wait_ms / 1000,
            max_queue=state.max_queue,
            inline_budget_s=state.inline_budget_ms / 1000,
        )
        state.batcher.start()
        state.model = model
        READY.set(1)
    except Exception as e:
        state.load_error = f"{type(e).__name__}: {e}"
        log.exception("could not load model %s", state.model_path)
        # A service that can never become ready should exit so its supervisor notices.
        asyncio.get_running_loop().call_later(0.5, _exit, 3)


def _freeze_heap() -> None:
    """Exempt everything loaded so far from the cyclic garbage collector.

    Rasa, TensorFlow and the model leave about half a million tracked objects behind, and a
    full collection walks all of them: 300 ms with every request waiting, at whatever moment
    the allocation counters say (that was our p99 under load). Those objects live as long as
    the process, so they are moved out of the collector's sight once, after loading.
    """
    gc.collect()
    gc.freeze()
    log.info("heap frozen after model load: %d objects exempt from GC", gc.get_freeze_count())


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """When our parent dies we are re-parented; notice it and shut down cleanly."""
    while os.getppid() == parent:  # noqa: ASYNC110  # nothing to wait on but time
        await asyncio.sleep(1.0)
    log.warning("parent process %s exited; stopping", parent)
    stop.set()


def _observed(parse_many: Any) -> Any:
    def run(texts: list) -> list:
        BATCH_SIZE.observe(len(texts))
        return parse_many(texts)

    return run


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def serve(
    state: State,
    host: str,
    port: int,
    *,
    watch_parent: int | None = None,
    ready: Any = None,
) -> None:
    """Listen at once (so /healthz answers while the model loads), load the model, and
    serve until SIGTERM / SIGINT or the parent's death; then stop gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():  # a second signal: the operator does not want to wait
            log.warning("second stop signal; exiting now")
            _exit(1)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    limits = Limits(
        max_body_bytes=state.max_body_bytes,
        request_timeout_s=state.request_timeout_s,
        keep_alive_s=state.keep_alive_s,
    )
    server = HttpServer(Handlers(state).router(), error, limits)
    await server.start(host, port)
    if ready is not None:
        ready(server.port)
    tasks = [asyncio.create_task(_load_model(state), name="load-model")]
    if watch_parent is not None:
        tasks.append(asyncio.create_task(_watch_parent(watch_parent, stop), name="parent"))
    await stop.wait()
    log.info("stopping")
    for t in tasks:
        t.cancel()
    await server.stop(timeout_s=2.0)
    if state.batcher is not None:
        await state.batcher.stop()
    state.executor.shutdown(wait=False, cancel_futures=True)
    if state.model is None and state.load_error is None:
        # stopped while the model was still loading: the loading thread cannot be
        # interrupted, and waiting for it (seconds) only delays the supervisor
        log.info("stopped before the model finished loading")
        _exit(0)


def _use_uvloop() -> None:
    """uvloop when the runtime has it (Rasa depends on it; stock `rasa run` serves on it too):
    every parse crosses threads twice (event loop -> parse worker -> event loop), and its
    cross-thread wake-ups are cheaper than asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Rasa 3.6 always brings it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="careline nlu serve", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="trained model (.tar.gz)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5005)
    p.add_argument("--max-body-bytes", type=int, default=16384)
    p.add_argument("--max-text-chars", type=int, default=2000)
    p.add_argument("--max-batch", type=int, default=64, help="texts per model call (1 = off)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="wait for stragglers")
    p.add_argument("--max-queue", type=int, default=512, help="waiting texts before 503")
    p.add_argument("--inline-budget-ms", type=float, default=50.0,
                   help="run a batch on the event loop when it should take at most this "
                        "long (0 = always on the worker thread)")  # fmt: skip
    p.add_argument("--request-timeout-s", type=float, default=30.0,
                   help="a request must arrive whole within this (else 408)")  # fmt: skip
    p.add_argument("--keep-alive-s", type=float, default=75.0,
                   help="close an idle keep-alive connection after this")  # fmt: skip
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started us dies (even by SIGKILL): no orphans",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}',
    )
    for noisy in ("tensorflow", "absl", "rasa"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.model.is_file():
        print(f"error: model file not found: {args.model}", file=sys.stderr)
        return 2
    state = State(
        args.model,
        args.max_body_bytes,
        args.max_text_chars,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        inline_budget_ms=args.inline_budget_ms,
        request_timeout_s=args.request_timeout_s,
        keep_alive_s=args.keep_alive_s,
    )
    _use_uvloop()
    asyncio.run(
        serve(
            state,
            args.host,
            args.port,
            watch_parent=os.getppid() if args.exit_with_parent else None,
            ready=lambda port: print(
                f"careline NLU service on http://{args.host}:{port} (model {args.model.name})",
                flush=True,
            ),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
