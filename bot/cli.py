"""The `careline` command line: one entry point for operators and developers.

The application itself is not imported here: `bot.app`, the top of the wiring, hands its
factory to `main` (it is the `careline` command), so `run` serves whatever app it was given
and nothing below the top imports the routes. Subcommands that need Rasa (training, serving,
scoring) run it in the NLU runtime (.venv-nlu) as a child process; this process never
imports rasa.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import uvloop

from bot.auth import cli as agents_cli
from bot.core.settings import Settings, SettingsError, load_settings
from nlu.threshold import IN_SCOPE_BUDGET

if TYPE_CHECKING:  # the triage lexicon loads only for the commands that use it
    from aiohttp import web

    from nlu.process import NLUServiceProcess
    from nlu.triage.triage import Triage


class AppFactory(Protocol):
    """What `careline run` serves: `bot.app.create_app`."""

    def __call__(self, settings: Settings, *, nlu_url: str, public_url: str) -> web.Application: ...


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


# -- training ------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from nlu.training import ensure_project_model, project_model

    settings = _settings(args)
    model = project_model(settings)
    if model.exists and not args.force:
        print(f"model up to date: {model.path} (config and data unchanged; --force retrains)")
        return 0
    path = ensure_project_model(settings, force=args.force, quiet=args.quiet)
    print(f"model ready: {path}")
    return 0


# -- NLU service ---------------------------------------------------------------------------


def cmd_nlu_serve(args: argparse.Namespace) -> int:
    from nlu.training import ensure_project_model, nlu_env

    settings = _settings(args)
    model = args.model or ensure_project_model(settings)
    n = settings.nlu
    cmd = [
        str(settings.nlu_python), "-m", "nlu.runtime.service", "--model", str(model),
        "--host", args.host or n.host, "--port", str(args.port or n.port),
        "--max-body-bytes", str(n.max_body_bytes), "--max-text-chars", str(n.max_text_chars),
    ]  # fmt: skip
    os.chdir(settings.root)
    # exec: signals (Ctrl-C, SIGTERM from a supervisor) reach the service directly.
    os.execve(cmd[0], cmd, nlu_env(settings))


def cmd_nlu_eval(args: argparse.Namespace) -> int:
    import subprocess

    from nlu.training import ensure_project_model, nlu_env

    settings = _settings(args)
    if args.benchmark:
        from nlu import bench_eval

        pipelines = tuple(p.strip() for p in args.pipelines.split(",") if p.strip())
        if not 0.0 <= args.in_scope_budget <= 1.0:
            print("error: --in-scope-budget is a share of in-scope accuracy, between 0 and 1 "
                  f"(0.01 is one point), not {args.in_scope_budget}", file=sys.stderr)  # fmt: skip
            return 2
        rows = bench_eval.run(
            settings, args.benchmark, pipelines, args.benchmark_root, args.threshold,
            args.in_scope_budget,
        )  # fmt: skip
        print(bench_eval.render(rows))
        if args.json:
            args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    model = ensure_project_model(settings)
    test = args.test or settings.path(settings.nlu.heldout)
    cmd = [str(settings.nlu_python), "-m", "nlu.runtime.evaluate", "--model", str(model),
           "--test", str(test)]  # fmt: skip
    if args.json:
        cmd += ["--json", str(args.json)]
    print(f"evaluating {model.name} on {test} (held out: never trained on)", file=sys.stderr)
    return subprocess.run(cmd, cwd=settings.root, env=nlu_env(settings), check=False).returncode


# -- parse ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _nlu_client(settings: Settings, url: str | None) -> AsyncIterator[Any]:
    """A client of the NLU service at `url`, or of a local one on the project model (trained
    if needed) that lives as long as the client."""
    from nlu.client import NLUClient

    service = None
    if url is None:
        from nlu.process import NLUServiceProcess
        from nlu.training import ensure_project_model

        model = await asyncio.to_thread(ensure_project_model, settings)
        service = NLUServiceProcess(settings, model, port=0)
        print(f"starting a local NLU service ({model.name}) ...", file=sys.stderr)
        url = await service.start()
    try:
        async with NLUClient.from_settings(settings, base_url=url) as client:
            yield client
    finally:
        if service is not None:
            await service.stop()


async def _parse(settings: Settings, texts: Sequence[str], url: str | None) -> list[dict]:
    async with _nlu_client(settings, url) as client:
        return [(await client.parse(t)).raw for t in texts]


def cmd_parse(args: argparse.Namespace) -> int:
    settings = _settings(args)
    url = args.url or settings.nlu.url
    for result in asyncio.run(_parse(settings, args.text, url)):
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


# -- run -----------------------------------------------------------------------------------


async def _run(settings: Settings, args: argparse.Namespace, create_app: AppFactory) -> None:
    from aiohttp import web

    from bot.core.logs import setup_logging
    from bot.core.security import require_shared_redis
    from bot.startup import GATEWAY

    setup_logging(args.log_level)
    require_shared_redis(settings)  # before any training or service start
    if settings.telegram.mode != "off":  # Telegram: fail fast on missing secrets
        from bot.channels.telegram.credentials import TelegramCredentials

        TelegramCredentials.from_env(os.environ, settings.telegram)
    host = args.host or settings.gateway.host
    port = args.port or settings.gateway.port
    public_url = settings.gateway.public_url or f"http://{host}:{port}"
    embedded: list[str] = []
    service, nlu_url = await _nlu_service(settings, args)
    if service is not None:
        embedded.append("NLU service as a supervised child process")
    app = create_app(settings, nlu_url=nlu_url, public_url=public_url)
    runner = web.AppRunner(app, access_log=None)
    try:  # a failed start closes what it had opened, the NLU child included
        await runner.setup()  # runs startup: migrations, Redis, workers
        await web.TCPSite(
            runner, host, port, backlog=settings.gateway.listen_backlog,
            reuse_port=args.reuse_port or None,
        ).start()  # fmt: skip
        gw = app[GATEWAY]
        assert gw.redis is not None and gw.db is not None
        if gw.redis.embedded:
            embedded.append("Redis: in-process stand-in (single replica only; set REDIS_URL)")
        if gw.db.dialect == "sqlite":
            embedded.append("database: SQLite file (set DATABASE_URL for PostgreSQL)")
        print(f"careline is up (replica {gw.replica}):")
        print(f"  widget demo    {public_url}/")
        print(f"  agent console  {public_url}/console  (supervisors: /console/supervisor)")
        print(f"  health         {public_url}/healthz  {public_url}/readyz  {public_url}/metrics")
        print(f"  NLU service    {nlu_url}")
        print(f"  telegram       {_telegram_line(settings, public_url)}")
        print(f"  database       {gw.db!r}")
        print(f"  redis          {gw.redis.url}")
        print(f"  embedded:      {'; '.join(embedded) if embedded else 'nothing'}")
        print("Ctrl-C stops everything.", flush=True)
        # A worker of `--workers N` also stops when its supervisor is gone (even SIGKILLed).
        parent = os.getppid() if args.reuse_port else None
        await _until_stopped(service.supervise() if service is not None else None, parent)
    finally:
        await runner.cleanup()
        if service is not None:
            await service.stop()


async def _nlu_service(
    settings: Settings, args: argparse.Namespace
) -> tuple[NLUServiceProcess | None, str]:
    """The configured NLU service, or one started here as a supervised child process."""
    from nlu.process import NLUServiceProcess
    from nlu.training import ensure_project_model

    if settings.nlu.url is not None:
        return None, settings.nlu.url
    model = await asyncio.to_thread(ensure_project_model, settings)
    service = NLUServiceProcess(settings, model, port=args.nlu_port)
    print(f"starting NLU service ({model.name}); log: {service.log_path}", flush=True)
    return service, await service.start()


async def _run_workers(settings: Settings, args: argparse.Namespace) -> None:
    """`--workers N`: this process supervises N gateway processes on one port."""
    from bot.core.logs import setup_logging
    from bot.core.security import require_shared_redis
    from bot.workers import check_workers, supervise, worker_command, worker_env

    setup_logging(args.log_level)
    require_shared_redis(settings)
    check_workers(settings, args.workers)
    host = args.host or settings.gateway.host
    port = args.port or settings.gateway.port
    service, nlu_url = await _nlu_service(settings, args)
    config = ["--config", str(args.config)] if args.config else []
    argv = worker_command(
        [*config, "run", "--host", host, "--port", str(port), "--log-level", args.log_level]
    )
    print(f"careline: {args.workers} gateway workers on http://{host}:{port} "
          f"(NLU {nlu_url}); Ctrl-C stops everything.", flush=True)  # fmt: skip
    try:
        await _until_stopped(supervise(argv, args.workers, worker_env(nlu_url)))
    finally:
        if service is not None:
            await service.stop()


def _telegram_line(settings: Settings, public_url: str) -> str:
    t = settings.telegram
    if t.mode == "webhook":
        return f"webhook {(t.public_base_url or public_url).rstrip('/')}{t.webhook_path}"
    if t.mode == "polling":
        return "polling (development)"
    return "off (careline.telegram.mode)"


async def _until_stopped(background: Any = None, parent: int | None = None) -> None:
    """Wait for SIGINT/SIGTERM (explicit handlers: a supervisor's SIGTERM, and SIGINT even
    when the parent shell started us with it ignored), or for process `parent` to be gone
    (we are re-parented then)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def orphaned() -> None:
        while os.getppid() == parent:  # noqa: ASYNC110  # nothing to wait on but time
            await asyncio.sleep(1.0)
        print(f"supervisor {parent} is gone; stopping", flush=True)
        stop.set()

    tasks = [asyncio.ensure_future(background)] if background is not None else []
    if parent is not None:
        tasks.append(asyncio.ensure_future(orphaned()))
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def cmd_run(args: argparse.Namespace) -> int:
    create_app: AppFactory | None = args.app_factory
    if create_app is None:
        print("error: `run` needs the application: use the `careline` command "
              "(or `python -m bot.app run`)", file=sys.stderr)  # fmt: skip
        return 2
    settings = _settings(args)
    if args.telegram_polling:
        telegram = settings.telegram.model_copy(update={"mode": "polling"})
        settings = settings.model_copy(update={"telegram": telegram})
    # uvloop: the gateway's sockets, timers and callbacks at a fraction of asyncio's cost.
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(
            _run_workers(settings, args) if args.workers != 1 else _run(settings, args, create_app)
        )
    print("careline stopped.")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(f"{settings.config_path}: OK")
    print(json.dumps(settings.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return 0


# -- triage --------------------------------------------------------------------------------


def cmd_triage(args: argparse.Namespace) -> int:
    """Triage TEXT..., a JSONL stream (--jsonl), or score a labelled set (--eval)."""
    from nlu.triage.evaluate import (
        JsonlError,
        classify_object,
        evaluate,
        iter_jsonl,
        load_intents,
        open_input,
    )
    from nlu.triage.triage import LexiconError, Triage

    settings = _settings(args)
    try:
        triage = Triage.from_settings(settings)
        if args.corpus or args.tune:
            return _triage_corpus(settings, triage, args)
        if (args.jsonl or args.text) and not args.lexicon_only:
            return _triage_live(settings, triage, args)
        if args.eval:
            intents = None
            if args.with_intents:
                with open_input(args.with_intents) as f:
                    intents = load_intents(f, str(args.with_intents))
            with open_input(args.eval) as f:
                rows = iter_jsonl(f, str(args.eval))
                report = evaluate(triage, rows, str(args.eval), args.split, intents)
            out = report.as_dict() if args.json else report.format()
            print(json.dumps(out, ensure_ascii=False, indent=2) if args.json else out)
            return 0
        if args.jsonl:
            with open_input(args.jsonl) as f:
                for _, obj in iter_jsonl(f, str(args.jsonl)):
                    result = classify_object(triage, obj).as_dict()
                    print(json.dumps({"text": obj["text"], **result}, ensure_ascii=False),
                          flush=True)  # fmt: skip
            return 0
        if not args.text:
            print("error: give TEXT, --jsonl FILE or --eval FILE", file=sys.stderr)
            return 2
        for text in args.text:
            result = triage.classify(
                text, intent=args.intent, confidence=args.confidence, misses=args.misses
            )
            print(json.dumps({"text": text, **result.as_dict()}, ensure_ascii=False))
        return 0
    except BrokenPipeError:  # `careline triage ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (JsonlError, LexiconError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _triage_live(settings: Settings, triage: Triage, args: argparse.Namespace) -> int:
    """The gateway's verdict: each text (with its `history`) parsed by the NLU service, then
    triaged the way the engine does (nlu.triage.corpus_eval.conversation_verdict). It streams:
    each line is printed as soon as it is triaged, and a malformed line stops the run."""
    return asyncio.run(_live_verdicts(settings, triage, args))


async def _live_verdicts(settings: Settings, triage: Triage, args: argparse.Namespace) -> int:
    from nlu.triage.corpus_eval import Turn, conversation_verdict
    from nlu.triage.evaluate import iter_jsonl, open_input

    n = settings.triage.model.context_messages
    async with _nlu_client(settings, args.url or settings.nlu.url) as client:
        with contextlib.ExitStack() as stack:
            if args.jsonl:
                f = stack.enter_context(open_input(args.jsonl))
                objs = (obj for _, obj in iter_jsonl(f, str(args.jsonl)))
            else:
                objs = iter({"text": t, "misses": args.misses} for t in args.text)
            for obj in objs:
                history = obj.get("history") or []
                if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
                    raise ValueError(f'"history" must be a list of strings: {obj!r:.80}')
                texts = [*history, obj["text"]]
                turns = []
                for i, text in enumerate(texts):
                    context = texts[max(0, i - n) : i] if n else ()
                    r = await client.parse(text, context=context)
                    turns.append(Turn(text, r.intent, r.confidence, r.severity))
                v = conversation_verdict(triage, turns, int(obj.get("misses") or 0))
                print(json.dumps({"text": obj["text"], **v.as_dict()}, ensure_ascii=False),
                      flush=True)  # fmt: skip
    return 0


def _triage_corpus(settings: Settings, triage: Triage, args: argparse.Namespace) -> int:
    """--corpus: blind and leave-one-writer-out figures; --tune: thresholds from the folds."""
    import tempfile

    from nlu.training import triage_fold_scores
    from nlu.triage.corpus_eval import load_rows, score, tune

    with tempfile.TemporaryDirectory() as tmp:
        path = triage_fold_scores(
            settings, Path(tmp) / "folds.jsonl", blind=not args.tune, lowo=True
        )
        rows = load_rows(path)
    if args.tune:
        print("choosing thresholds on the leave-one-writer-out folds ...", file=sys.stderr)
        report = tune(triage, rows)
    else:
        lowo = [r for r in rows if r["fold"].startswith("lowo")]
        blind = [r for r in rows if r["fold"] == "blind"]
        report = {
            "blind": {
                "careline": score(triage, blind)[0],
                "lexicon_and_intent": score(triage, blind, use_model=False)[0],
                "lexicon_alone": score(triage, blind, use_model=False, use_intent=False)[0],
                "missed_critical": score(triage, blind)[1],
            },
            "leave_one_writer_out": {
                "careline": score(triage, lowo)[0],
                "lexicon_alone": score(triage, lowo, use_model=False, use_intent=False)[0],
            },
        }
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if isinstance(args.json, str):
        Path(args.json).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    print(text)
    return 0


# -- surveys (logic in surveys/commands.py) --------------------------------------------------


def cmd_export_surveys(args: argparse.Namespace) -> int:
    from surveys.commands import export_surveys

    return asyncio.run(export_surveys(_settings(args), args))


def cmd_demo_data(args: argparse.Namespace) -> int:
    from surveys.commands import demo_data

    return asyncio.run(demo_data(_settings(args), args))


def _add_survey_commands(sub: Any) -> None:
    ex = sub.add_parser("export", help="export data for managers")
    exsub = ex.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    es = exsub.add_parser("surveys", help="one row per resolved conversation, as CSV or XLSX")
    es.add_argument("--from", dest="date_from", metavar="DATE", help="first day (YYYY-MM-DD)")
    es.add_argument("--to", dest="date_to", metavar="DATE", help="last day, inclusive")
    es.add_argument("--format", choices=("csv", "xlsx"), default="csv")
    for name in ("channel", "queue", "agent", "severity", "language"):
        es.add_argument(f"--{name}", help=f"only this {name}")
    es.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    es.set_defaults(func=cmd_export_surveys)
    dd = sub.add_parser("demo-data", help="fill the database with synthetic, marked demo data")
    dd.add_argument("--conversations", type=int, required=True, metavar="N")
    dd.add_argument("--days", type=int, default=90, help="spread over the last DAYS days")
    dd.add_argument("--seed", type=int, help="random seed (same seed, same data)")
    dd.add_argument("--force", action="store_true", help="even if real survey answers exist")
    dd.set_defaults(func=cmd_demo_data)


# -- wiring --------------------------------------------------------------------------------


def cmd_agents(args: argparse.Namespace) -> int:
    return agents_cli.run(args, _settings(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="careline", description="careline customer-support chat")
    p.add_argument("--config", type=Path, help="config.yml to use (default: $CARELINE_CONFIG "
                   "or the project's config.yml)")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train the NLU model if config.yml or data/ changed")
    t.add_argument("--force", action="store_true", help="retrain even if up to date")
    t.add_argument("--quiet", action="store_true", help="no training progress output")
    t.set_defaults(func=cmd_train)

    nlu = sub.add_parser("nlu", help="the NLU service and its evaluation")
    nsub = nlu.add_subparsers(dest="nlu_command", required=True, metavar="COMMAND")
    s = nsub.add_parser("serve", help="run the NLU service (Rasa-compatible /model/parse)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--model", type=Path, help="model file (default: the project's, trained "
                   "if needed)")  # fmt: skip
    s.set_defaults(func=cmd_nlu_serve)
    e = nsub.add_parser("eval", help="score the model on the held-out split of data/")
    e.add_argument("--test", type=Path, help="Rasa NLU YAML to score on (default: heldout)")
    e.add_argument("--json", type=Path, help="also write the report as JSON")
    e.add_argument(
        "--benchmark",
        help="a public benchmark instead of the held-out split: banking77, clinc150, hint3 "
        "(all three bots) or hint3-<bot>; trains on its train split, scores its test split",
    )
    e.add_argument("--pipelines", default="ours,stock",
                   help="with --benchmark: ours, stock (Rasa's default), or both")  # fmt: skip
    e.add_argument("--benchmark-root", type=Path, help="folder of the benchmark data "
                   "(default ../shared/benchmarks)")  # fmt: skip
    e.add_argument("--threshold", type=float, help="with --benchmark: our fallback threshold "
                   "(default: tuned on validation data, never the test split)")  # fmt: skip
    e.add_argument("--in-scope-budget", type=float, default=IN_SCOPE_BUDGET,
                   help="with --benchmark: the share of validation in-scope accuracy the tuned "
                   "threshold may give up (default %(default)s, two points); a product choice: "
                   "docs/BENCHMARKS.md shows what each budget costs and catches")  # fmt: skip
    e.set_defaults(func=cmd_nlu_eval)

    pa = sub.add_parser("parse", help="print the NLU parse of TEXT as JSON")
    pa.add_argument("text", nargs="+", help="one or more messages")
    pa.add_argument("--url", help="NLU service URL (default: $NLU_URL, else start one)")
    pa.set_defaults(func=cmd_parse)

    r = sub.add_parser("run", help="start the whole system on embedded defaults")
    r.add_argument("--host", help="gateway address (default: careline.gateway.host)")
    r.add_argument("--port", type=int, help="gateway port (default: careline.gateway.port)")
    r.add_argument("--log-level", default="INFO")
    r.add_argument("--workers", type=int, default=1, help="gateway processes sharing the "
                   "port (SO_REUSEPORT; needs REDIS_URL when more than 1)")  # fmt: skip
    r.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--nlu-port", type=int, default=None, help="port for the embedded NLU "
                   "service (default: careline.nlu.port)")  # fmt: skip
    r.add_argument("--telegram-polling", action="store_true", help="Telegram in polling mode "
                   "(development: no public URL needed; needs TELEGRAM_BOT_TOKEN)")  # fmt: skip
    r.set_defaults(func=cmd_run)

    tr = sub.add_parser("triage", help="severity and queue of messages (or score a labelled set)")
    tr.add_argument("text", nargs="*", help="messages to triage (one JSON result per line)")
    src = tr.add_mutually_exclusive_group()
    src.add_argument("--jsonl", type=Path, help='triage {"text": ...} lines of FILE ("-": stdin)')
    src.add_argument("--eval", type=Path, help="score a labelled JSONL set (severity, queue)")
    tr.add_argument("--split", choices=["dev", "test", "all"], default="all",
                    help="--eval: which part of the labelled set (default: all)")  # fmt: skip
    tr.add_argument("--with-intents", type=Path, help='--eval: {"text", "intent", '
                    '"confidence"} lines giving the NLU reading (default: text only)')  # fmt: skip
    tr.add_argument("--json", nargs="?", const=True, default=None, metavar="FILE",
                    help="--eval: print the report as JSON; --corpus/--tune: also write it "
                    "to FILE")  # fmt: skip
    tr.add_argument("--intent", help="TEXT: the NLU intent to combine with the text")
    tr.add_argument("--confidence", type=float, default=0.0, help="TEXT: its confidence")
    tr.add_argument("--misses", type=int, default=0, help="TEXT: bot misses in a row so far")
    tr.add_argument("--url", help="TEXT/--jsonl: NLU service URL (default: NLU_URL, else a "
                    "local service on the project model)")  # fmt: skip
    tr.add_argument("--lexicon-only", action="store_true", help="TEXT/--jsonl: no NLU "
                    "service: the lexicon and --intent alone (no learned model)")  # fmt: skip
    src.add_argument("--corpus", action="store_true", help="score the triage corpus: blind "
                     "writers, leave-one-writer-out, the lexicon alone beside")  # fmt: skip
    src.add_argument("--tune", action="store_true", help="choose careline.triage.model's "
                     "thresholds on the writer folds (never the blind split)")  # fmt: skip
    tr.set_defaults(func=cmd_triage)

    agents_cli.add_parser(sub, cmd_agents)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    csub.add_parser("check", help="validate config.yml and print it").set_defaults(
        func=cmd_config_check
    )
    _add_survey_commands(sub)
    return p


def main(argv: Sequence[str] | None = None, *, app_factory: AppFactory | None = None) -> int:
    """Run one subcommand; `app_factory` is the application `run` serves (bot.app gives it)."""
    args = build_parser().parse_args(argv)
    args.app_factory = app_factory
    try:
        return int(args.func(args) or 0)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from nlu.client import NLUError
        from nlu.process import NLUStartError
        from nlu.training import TrainingError

        if isinstance(e, TrainingError | NLUStartError | NLUError):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
