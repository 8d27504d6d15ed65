"""The careline NLU service: Rasa's `POST /model/parse` contract, plus health and metrics.

NLU runtime only (Python 3.10). Run it with `careline nlu serve`, which picks the model and
starts this module inside .venv-nlu. The gateway can equally be pointed at a stock
`rasa run --enable-api` server: the request and response JSON are Rasa's.

The process answers /healthz at once and /readyz only once the model is loaded, so a
supervisor can tell "starting" from "broken". Parsing runs on one worker thread: TensorFlow
work must not block the event loop that answers health checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from nlu.vi.text import detect_language

log = logging.getLogger("careline.nlu.service")

RASA_VERSION = "3.6.21"

PARSE_SECONDS = Histogram(
    "careline_nlu_parse_seconds",
    "Time to parse one message, queueing included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUESTS = Counter("careline_nlu_requests_total", "Parse requests by HTTP status", ["status"])
READY = Gauge("careline_nlu_ready", "1 once the model is loaded")


class State:
    """Mutable service state shared by the handlers."""

    def __init__(self, model_path: Path, max_body_bytes: int, max_text_chars: int) -> None:
        self.model_path = model_path
        self.max_body_bytes = max_body_bytes
        self.max_text_chars = max_text_chars
        self.model: Any | None = None  # NLUModel once loaded
        self.load_error: str | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlu-parse")
        self.started = time.time()


STATE: web.AppKey[State] = web.AppKey("state", State)


def error(status: int, reason: str, message: str) -> web.Response:
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
    return web.json_response(body, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure is a JSON body with a clear message, never an HTML error page."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[STATE].max_body_bytes
        return error(413, "PayloadTooLarge", f"request body is larger than {limit} bytes")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error(e.status, e.reason.replace(" ", ""), e.text or e.reason)
    except Exception:  # a bug must still answer JSON; the traceback goes to the log
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "InternalError", "internal error while handling the request")


async def parse(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.model is None:
        REQUESTS.labels("503").inc()
        return error(503, "ModelNotReady", "the NLU model is still loading; retry shortly")
    problem = await _read_text(request, state.max_text_chars)
    if isinstance(problem, web.Response):
        REQUESTS.labels(str(problem.status)).inc()
        return problem
    text, message_id = problem
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(state.executor, state.model.parse, text)
    # Our additions live under one key so a Rasa-only client is not confused by them.
    result["careline"] = {
        "language": detect_language(text),
        "model": state.model.fingerprint,
    }
    PARSE_SECONDS.observe(time.monotonic() - started)
    REQUESTS.labels("200").inc()
    log.debug("parsed message_id=%s intent=%s", message_id, result["intent"].get("name"))
    return web.json_response(result, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def _read_text(request: web.Request, max_chars: int) -> Any:
    """Validate a parse request body; return (text, message_id) or an error response."""
    raw = await request.read()  # over client_max_size: 413 from the middleware
    if not raw:
        return error(400, "BadRequest", 'empty body: send JSON like {"text": "..."}')
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return error(400, "BadRequest", "body is not valid JSON (UTF-8)")
    if not isinstance(body, dict):
        return error(400, "BadRequest", 'body must be a JSON object like {"text": "..."}')
    text = body.get("text")
    if text is None:
        return error(400, "BadRequest", "missing field 'text'")
    if not isinstance(text, str):
        return error(400, "BadRequest", "field 'text' must be a string")
    if not text.strip():
        return error(400, "BadRequest", "field 'text' is empty")
    if len(text) > max_chars:
        return error(413, "TextTooLong", f"'text' is longer than {max_chars} characters")
    message_id = body.get("message_id")
    if message_id is not None and not isinstance(message_id, str):
        return error(400, "BadRequest", "field 'message_id' must be a string")
    return text, message_id


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: a model is loaded and parse requests will be served."""
    state = request.app[STATE]
    if state.model is not None:
        return web.json_response({"status": "ready", "model": state.model.fingerprint})
    if state.load_error:
        return web.json_response({"status": "failed", "error": state.load_error}, status=503)
    return web.json_response({"status": "loading"}, status=503)


async def version(request: web.Request) -> web.Response:
    state = request.app[STATE]
    model = state.model
    return web.json_response(
        {
            "version": RASA_VERSION,
            "minimum_compatible_version": "3.5.0",
            "model_fingerprint": model.fingerprint if model else None,
            "model_file": state.model_path.name,
        }
    )


async def status(request: web.Request) -> web.Response:
    """Rasa's GET /status shape, for tools written against a stock server."""
    state = request.app[STATE]
    if state.model is None:
        return error(409, "Conflict", "no model loaded yet")
    return web.json_response(
        {
            "model_id": state.model.fingerprint,
            "model_file": str(state.model_path),
            "num_active_training_jobs": 0,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _load_model(app: web.Application) -> Any:
    state = app[STATE]

    def load() -> Any:
        from nlu.runtime.model import NLUModel  # imports TensorFlow: seconds, so off-loop

        return NLUModel.load(state.model_path)

    async def background() -> None:
        try:
            state.model = await asyncio.get_running_loop().run_in_executor(state.executor, load)
            READY.set(1)
        except Exception as e:
            state.load_error = f"{type(e).__name__}: {e}"
            log.exception("could not load model %s", state.model_path)
            # A service that can never become ready should exit so its supervisor notices.
            asyncio.get_running_loop().call_later(0.5, _exit, 3)

    task = asyncio.create_task(background())
    yield
    task.cancel()
    state.executor.shutdown(wait=False, cancel_futures=True)


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_app(model_path: Path, *, max_body_bytes: int, max_text_chars: int) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes, middlewares=[json_errors])
    app[STATE] = State(model_path, max_body_bytes, max_text_chars)
    app.cleanup_ctx.append(_load_model)
    app.router.add_post("/model/parse", parse)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/version", version)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="careline nlu serve", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="trained model (.tar.gz)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5005)
    p.add_argument("--max-body-bytes", type=int, default=16384)
    p.add_argument("--max-text-chars", type=int, default=2000)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}',
    )
    for noisy in ("tensorflow", "absl", "rasa", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.model.is_file():
        print(f"error: model file not found: {args.model}", file=sys.stderr)
        return 2
    app = build_app(
        args.model, max_body_bytes=args.max_body_bytes, max_text_chars=args.max_text_chars
    )
    print(
        f"careline NLU service on http://{args.host}:{args.port} (model {args.model.name})",
        flush=True,
    )
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
