"""Starting and supervising the NLU service as a child process (gateway side).

`make run` on a fresh machine has no NLU_URL: the gateway then runs the NLU service itself,
in its own runtime (.venv-nlu), waits until it reports ready, and restarts it if it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from pathlib import Path

import aiohttp

from bot.core.settings import Settings
from nlu.training import nlu_env

log = logging.getLogger("careline.nlu.process")


class NLUStartError(RuntimeError):
    """The NLU service did not become ready; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


class NLUServiceProcess:
    def __init__(
        self,
        settings: Settings,
        model: Path,
        *,
        host: str | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.model = model
        self.host = host or settings.nlu.host
        self.port = port if port is not None else settings.nlu.port
        if self.port == 0:
            self.port = free_port(self.host)
        self.log_path = log_path or settings.root / "var" / "log" / f"nlu-{self.port}.log"
        self.extra_args = extra_args  # e.g. ("--max-queue", "8")
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        n = self.settings.nlu
        return [
            str(self.settings.nlu_python), "-m", "nlu.runtime.service",
            "--model", str(self.model), "--host", self.host, "--port", str(self.port),
            "--max-body-bytes", str(n.max_body_bytes), "--max-text-chars", str(n.max_text_chars),
            "--exit-with-parent",
            *self.extra_args,
        ]  # fmt: skip

    async def start(self, timeout: float | None = None) -> str:
        """Spawn the service and wait until /readyz answers 200; return its URL."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fh = await asyncio.to_thread(open, self.log_path, "ab")  # handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(),
                cwd=self.settings.root,
                env=nlu_env(self.settings),
                stdout=log_fh,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it cleanly
            )
        finally:
            log_fh.close()
        await self.wait_ready(timeout or self.settings.nlu.startup_timeout_s)
        return self.url

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise NLUStartError(
                        f"NLU service exited with code {self.proc.returncode} while starting; "
                        f"log {self.log_path}:\n{_tail(self.log_path)}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline:
                    await self.stop()
                    raise NLUStartError(
                        f"NLU service not ready after {timeout:.0f} s; log {self.log_path}:\n"
                        f"{_tail(self.log_path)}"
                    )
                await asyncio.sleep(0.25)

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def supervise(self, max_backoff: float = 30.0) -> None:
        """Restart the service whenever it exits unexpectedly (exponential backoff)."""
        backoff = 1.0
        while not self._stopping:
            assert self.proc is not None
            code = await self.proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            log.error("NLU service exited with code %s; restarting in %.0f s", code, backoff)
            await asyncio.sleep(backoff)
            try:
                started = time.monotonic()
                await self.start()
                log.info("NLU service back after %.1f s", time.monotonic() - started)
                backoff = 1.0
            except NLUStartError as e:
                log.error("%s", e)
                backoff = min(max_backoff, backoff * 2)
