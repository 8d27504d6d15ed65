"""A small HTTP/1.1 server for the NLU service's handful of JSON routes, on httptools.

Why not aiohttp: every customer message is one `POST /model/parse`, and measured with wrk
on these machines (`bench/http_floor.py`) aiohttp's request and response machinery costs
81-93 µs per request on a parse-shaped route with no model behind it, about half of what
parsing the message costs; this server, on httptools (llhttp, the parser behind Node.js
and uvicorn), costs about 30 µs.
The NLU service is CPU-bound on one core, so that difference is its throughput.

What it does: HTTP/1.1 keep-alive and pipelining (answers in request order, at most
`max_pipelined` read ahead, 429 past four times that), HTTP/1.0, HEAD, chunked request
bodies, `Expect: 100-continue` (417 for other expectations), half-closed clients, bounded
heads and bodies (431 / 413, counted as they arrive), a deadline for receiving a whole
request (408, against slow-loris clients) and for a client to take its answer (else the
connection is dropped), an idle keep-alive timeout, 400 on anything llhttp rejects or on
upgrades, 404 / 405 with `Allow`. After an error answer it drains the client briefly before
closing, so a reset does not destroy the answer. What it does not: TLS, HTTP/2, upgrades,
streamed responses: the service sits behind the gateway on a private network, and every
answer is a small JSON document.

Python 3.10 (the NLU runtime); httptools and uvloop come with Rasa.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

import httptools

log = logging.getLogger("careline.nlu.http")


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]
# (status, reason, message) -> the body clients get for errors the server itself raises
ErrorBody = Callable[[int, str, str], Response]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16384
    max_head_bytes: int = 16384  # request line + headers
    request_timeout_s: float = 30.0  # from a request's first byte to its last
    keep_alive_s: float = 75.0  # an idle connection is closed after this
    max_pipelined: int = 32  # requests read ahead of the one being answered


@dataclass
class _Pending:
    what: Request | Response  # a request to answer, or an error answer to send and hang up
    keep_alive: bool
    http10: bool
    head_only: bool  # HEAD: the GET answer's head, without its body


# after an error answer, how long to drain what the client still sends before closing
LINGER_S = 2.0


class _Reject(Exception):
    """Raised inside a parser callback: answer `status` and close the connection."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Router:
    """Exact-path routes; the service has no path parameters."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._routes.setdefault(path, {})[method.upper()] = handler

    def find(self, method: str, path: str) -> Handler | tuple[int, str, str, dict[str, str]]:
        """The handler, or (status, reason, message, headers) for 404 / 405."""
        methods = self._routes.get(path)
        if methods is None:
            return 404, "NotFound", f"no route for {path}", {}
        handler = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            allow = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
            return (
                405,
                "MethodNotAllowed",
                f"{method} is not allowed here (allowed: {allow})",
                {"Allow": allow},
            )
        return handler


class _Date:
    """The Date header, formatted at most once a second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        s = int(time.time())
        if s != cls.second:
            cls.second, cls.value = s, email.utils.formatdate(s, usegmt=True).encode()
        return cls.value


_PHRASES = {s.value: s.phrase for s in HTTPStatus}


def _head(status: int, content_type: str, length: int, extra: dict[str, str], close: bool,
          http10_keep_alive: bool) -> bytes:  # fmt: skip
    head = (f"HTTP/1.1 {status} {_PHRASES.get(status, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n")  # fmt: skip
    for name, value in extra.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        head += f"{name}: {value}\r\n"
    if close:
        head += "Connection: close\r\n"
    elif http10_keep_alive:
        head += "Connection: keep-alive\r\n"
    return head.encode("latin-1") + b"Date: " + _Date.now() + b"\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them one at a time, in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        # what to answer, in order: a request, or an error to send before hanging up
        self._pending: collections.deque[_Pending] = collections.deque()
        self._in_message = False
        self._in_head = False  # between a request's first byte and the end of its headers
        self._read_done = False  # nothing more is to be parsed (error, close, EOF)
        self._failed = False  # an error answer is queued, to be followed by a hang-up
        self._progress = 0  # parser callbacks so far: a read that adds none is a stalled line
        self._stalled_bytes = 0  # bytes of reads in a row that completed nothing
        self._continue_owed = False  # a `100 Continue` held back until earlier answers are out
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._reset_message()

    # -- transport callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)
        self._arm(self._limits.keep_alive_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._server.connections.discard(self)
        self._disarm()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # a queued parse of a vanished client is dropped, not run
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def eof_received(self) -> bool:
        """The client has finished sending (a half-close): answer what it asked, then
        close. True keeps our sending side open until then."""
        self._read_done = True
        self._in_message = False  # a request cut off mid-way will never complete
        if self._task is None and not self._pending:
            self._close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._closing or self._read_done:
            return
        was_in_message, progress = self._in_message, self._progress
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "BadRequest", "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self._fail(cause.status, cause.reason, cause.message)
            elif not self._read_done:  # bytes after a `Connection: close` request: ignored
                self._fail(400, "BadRequest", f"malformed HTTP request: {e}")
            return
        # httptools hands us a header (or a trailer) only once its line is complete, and
        # buffers it until then: reads that complete nothing are counted here instead, so a
        # line that never ends is cut off at the head limit
        if was_in_message and self._in_message and progress == self._progress:
            self._stalled_bytes += len(data)
            limit = self._limits.max_head_bytes
            if self._in_head and self._head_bytes + self._stalled_bytes > limit:
                self._fail(*self._head_too_large())
            elif self._stalled_bytes > limit:
                self._fail(400, "BadRequest", f"a chunk-size or trailer line exceeds {limit} bytes")
        else:
            self._stalled_bytes = 0

    # -- parser callbacks -----------------------------------------------------------------

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0

    def on_message_begin(self) -> None:
        self._progress += 1
        self._reset_message()
        self._in_message = self._in_head = True
        if self._task is None:
            self._arm(self._limits.request_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._progress += 1
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress += 1
        if not self._in_head:
            return  # a trailer after a chunked body: it may not override the request's headers
        self._count_head(len(name) + len(value) + 4)
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self._limits.max_head_bytes:
            raise _Reject(*self._head_too_large())

    def _head_too_large(self) -> tuple[int, str, str]:
        limit = self._limits.max_head_bytes
        return 431, "HeadersTooLarge", f"request line and headers exceed {limit} bytes"

    def on_headers_complete(self) -> None:
        self._progress += 1
        self._in_head = False
        if self._parser.should_upgrade():  # refused before the request is queued
            raise _Reject(400, "BadRequest", "protocol upgrades are not supported")
        declared = self._headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > self._limits.max_body_bytes
        ):
            raise self._too_large()
        expect = self._headers.get("expect")
        if expect is not None and self._parser.get_http_version() != "1.0":  # 1.0: ignored
            if expect.lower() != "100-continue":
                raise _Reject(417, "ExpectationFailed", f"cannot meet 'Expect: {expect}'")
            # now if nothing is waiting to be answered before it, else once the earlier
            # answers are out, so answers stay in order
            if not self._pending and self._task is None:
                self._send_continue()
            else:
                self._continue_owed = True

    def _send_continue(self) -> None:
        self._continue_owed = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self._progress += 1
        self._body_bytes += len(chunk)
        if self._body_bytes > self._limits.max_body_bytes:
            raise self._too_large()
        self._body.append(chunk)

    def _too_large(self) -> _Reject:
        limit = self._limits.max_body_bytes
        return _Reject(413, "PayloadTooLarge", f"request body is larger than {limit} bytes")

    def on_message_complete(self) -> None:
        self._progress += 1
        self._continue_owed = False  # the body came anyway
        url = httptools.parse_url(self._url or b"/")
        method = self._parser.get_method().decode("ascii")
        request = Request(
            method,
            (url.path or b"/").decode("utf-8", "replace"),
            (url.query or b"").decode("utf-8", "replace"),
            self._headers,
            b"".join(self._body),
        )
        self._in_message = False
        keep_alive = self._parser.should_keep_alive()
        http10 = self._parser.get_http_version() == "1.0"
        self._pending.append(_Pending(request, keep_alive, http10, method == "HEAD"))
        if not keep_alive:
            self._read_done = True  # whatever follows is not ours to read
        self._disarm()
        if len(self._pending) > self._limits.max_pipelined:
            # llhttp goes on parsing the rest of this chunk whatever we do: past a hard cap,
            # refuse instead of queueing without bound
            n = 4 * self._limits.max_pipelined
            if len(self._pending) > n:
                raise _Reject(429, "TooManyPipelined",
                              f"more than {n} requests sent ahead of their answers")  # fmt: skip
            if self._transport is not None:
                self._transport.pause_reading()
                self._reading_paused = True
        self._start_answering()

    def _start_answering(self) -> None:
        if self._task is None:
            self._task = self._loop.create_task(self._answer_pending())

    # -- answering ------------------------------------------------------------------------

    async def _answer_pending(self) -> None:
        try:
            while self._pending and not self._closing:
                item = self._pending.popleft()
                if self._reading_paused and len(self._pending) <= self._limits.max_pipelined:
                    self._reading_paused = False
                    if self._transport is not None and not self._read_done:
                        self._transport.resume_reading()
                if isinstance(item.what, Response):
                    response = item.what
                else:
                    response = await self._server.respond(item.what)
                if not self._writable.is_set() and not await self._wait_writable():
                    return
                close = not item.keep_alive or self._server.draining
                self._write(response, close=close, http10_keep_alive=item.http10,
                            head_only=item.head_only)  # fmt: skip
                if close:
                    self._close(linger=isinstance(item.what, Response))
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in answering: log it and drop the connection, never hang
            log.exception("error while answering; dropping the connection")
            self.abort()
            return
        finally:
            self._task = None
        if self._closing:
            return
        if self._read_done:  # the client half-closed and has had all its answers
            self._close()
        elif not self._pending:
            limits = self._limits
            self._arm(limits.request_timeout_s if self._in_message else limits.keep_alive_s)
            if self._continue_owed and self._in_message:
                self._send_continue()

    async def _wait_writable(self) -> bool:
        """Wait for a client that is not reading its answers, but not for ever."""
        try:
            await asyncio.wait_for(self._writable.wait(), self._limits.request_timeout_s)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            log.info("dropping a connection whose client stopped reading its answers")
            self.abort()
            return False
        return not self._closing

    def _write(self, response: Response, *, close: bool, http10_keep_alive: bool = False,
               head_only: bool = False) -> None:  # fmt: skip
        if self._transport is None or self._transport.is_closing():
            return
        r = response
        head = _head(r.status, r.content_type, len(r.body), r.headers, close, http10_keep_alive)
        self._transport.write(head if head_only else head + r.body)

    def _fail(self, status: int, reason: str, message: str) -> None:
        """Answer an error the request never reached a handler for, and hang up (the
        rest of the stream cannot be trusted to start at a request boundary)."""
        if self._closing or self._failed:
            return
        log.info("closing connection: %d %s", status, message)
        self._read_done = self._failed = True
        self._in_message = self._in_head = False
        if self._transport is not None:
            self._transport.pause_reading()
        # after the answers to the requests before it, in order
        error = self._server.error_body(status, reason, message)
        self._pending.append(_Pending(error, False, False, False))
        self._start_answering()

    def _close(self, *, linger: bool = False) -> None:
        """Close after what was written has been sent. After an error (`linger`), first
        read and discard what the client is still sending for a moment: closing with
        unread data makes the kernel send a reset, which can destroy the error answer
        before the client has read it."""
        self._closing = True
        self._disarm()
        t = self._transport
        if t is None:
            return
        if linger and t.can_write_eof():
            t.write_eof()
            self._read_done = True
            t.resume_reading()
            self._timer = self._loop.call_later(LINGER_S, self._close_transport)
            return
        self._close_transport()

    def _close_transport(self) -> None:
        """`close()` waits for unsent data to go out: for a client that stopped reading,
        for ever. So it gets the answer deadline, then the connection is dropped."""
        t = self._transport
        if t is None:
            return
        t.close()
        if t.get_write_buffer_size():
            self._timer = self._loop.call_later(self._limits.request_timeout_s, t.abort)

    def abort(self) -> None:
        self._closing = True
        self._disarm()
        if self._transport is not None:
            self._transport.abort()

    def close_when_idle(self) -> bool:
        """For shutdown: hang up now if nothing is being answered."""
        if self._closing:
            return True  # already on its way out (lingering after an error, say)
        if self._task is None and not self._pending:
            self._close()
            return True
        return False

    # -- timers ---------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._task is not None:
            return  # being answered (the handlers are bounded); re-armed when done
        if self._in_message:
            limit = self._limits.request_timeout_s
            self._fail(408, "RequestTimeout", f"the request did not arrive within {limit:g} s")
        else:
            self._close()  # idle keep-alive connection


class HttpServer:
    """Routes plus limits; `start` listens, `stop` closes gracefully."""

    def __init__(self, router: Router, error_body: ErrorBody, limits: Limits | None = None,
                 ) -> None:  # fmt: skip
        self.router = router
        self.error_body = error_body
        self.limits = limits or Limits()
        self.connections: set[_Connection] = set()
        self.draining = False  # shutting down: every answer says `Connection: close`
        self._server: asyncio.AbstractServer | None = None

    async def respond(self, request: Request) -> Response:
        found = self.router.find(request.method, request.path)
        if isinstance(found, tuple):
            status, reason, message, headers = found
            response = self.error_body(status, reason, message)
            response.headers.update(headers)
            return response
        try:
            return await found(request)
        except Exception:  # a bug must still answer JSON; the traceback goes to the log
            log.exception("unhandled error on %s %s", request.method, request.path)
            return self.error_body(
                500, "InternalError", "internal error while handling the request"
            )

    async def start(self, host: str, port: int, **kwargs: Any) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, **kwargs)
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop listening, hang up idle connections, give busy ones `timeout_s` to answer."""
        if self._server is None:
            return
        self._server.close()
        self.draining = True
        deadline = time.monotonic() + timeout_s
        while self.connections and time.monotonic() < deadline:
            for c in list(self.connections):
                c.close_when_idle()
            await asyncio.sleep(0.05)
        for c in list(self.connections):
            c.abort()  # still busy at the deadline (or its client is not reading)
        await self._server.wait_closed()


__all__ = ["ErrorBody", "Handler", "HttpServer", "Limits", "Request", "Response", "Router"]
