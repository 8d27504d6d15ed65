"""What the HTTP layer alone costs: wrk against a parse-shaped route with no model behind it.

Why: the NLU service is CPU-bound on one core, so every microsecond the HTTP framework
spends per request is throughput lost. This serves a route that only decodes the JSON body
and encodes a fixed answer the size of a real parse, from (a) aiohttp's web app, the
service's previous server, and (b) nlu/runtime/http_server.py, its current one, and drives
each with wrk at 64 connections. Run it with the NLU runtime (both servers run there):

    .venv-nlu/bin/python bench/http_floor.py [--seconds 4] [--rounds 2]

Needs Debian's wrk. Prints requests/s per round and µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ANSWER = {
    "text": "x" * 40,
    "intent": {"name": "warranty_policy", "confidence": 0.9},
    "entities": [],
    "intent_ranking": [{"name": f"intent_{i}", "confidence": 0.01} for i in range(10)],
}
BODY = json.dumps({"text": "bảo hành bao lâu vậy shop"}, ensure_ascii=False)
SCRIPT = "\n".join(
    ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"', "wrk.body = [[%s]]"]
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(kind: str, port: int, stop: asyncio.Event) -> None:
    import ujson

    if kind == "aiohttp":
        from aiohttp import web

        async def parse(request: web.Request) -> web.Response:
            ujson.loads(await request.read())
            return web.Response(text=ujson.dumps(ANSWER), content_type="application/json")

        app = web.Application()
        app.router.add_post("/model/parse", parse)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await stop.wait()
        await runner.cleanup()
        return
    from nlu.runtime.http_server import HttpServer, Request, Response, Router

    async def handle(request: Request) -> Response:
        ujson.loads(request.body)
        return Response(200, ujson.dumps(ANSWER).encode())

    router = Router()
    router.add("POST", "/model/parse", handle)
    server = HttpServer(router, lambda status, reason, msg: Response(status, msg.encode()))
    await server.start("127.0.0.1", port)
    await stop.wait()
    await server.stop()


def _server_main(kind: str, port: int) -> None:
    import signal

    import uvloop

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await _serve(kind, port, stop)

    uvloop.install()
    asyncio.run(run())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        _server_main(args.serve[0], int(args.serve[1]))
        return 0
    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(SCRIPT % BODY)
    print("| server | round | requests/s | µs per request |\n|---|---:|---:|---:|")
    for kind in ("aiohttp", "http_server"):
        port = _free_port()
        proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
        try:
            time.sleep(2.0)
            for k in range(args.rounds):
                out = subprocess.run(
                    [wrk, "-t1", "-c64", f"-d{args.seconds:g}s", "-s", f.name,
                     f"http://127.0.0.1:{port}/model/parse"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                rps = float(next(x for x in out.splitlines() if "Requests/sec" in x).split()[1])
                print(f"| {kind} | {k + 1} | {rps:,.0f} | {1e6 / rps:.0f} |", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
