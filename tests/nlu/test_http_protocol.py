"""The NLU service's HTTP/1.1 layer (nlu/runtime/http_server.py), over raw sockets.

An HTTP client library smooths over exactly what these tests need to see: pipelining,
`Expect: 100-continue`, malformed request lines, oversized heads and bodies, slow clients,
and when the server hangs up. So they speak bytes to the real service process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.core.settings import Settings
from nlu.process import NLUServiceProcess

pytestmark = pytest.mark.nlu

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        return json.loads(self.body)


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 10)
    return Reply(status, headers, body)


async def hung_up(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (EOF) within a few seconds."""
    try:
        return await asyncio.wait_for(reader.read(1), 5) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
async def conn(nlu_url: str) -> AsyncIterator[Conn]:
    url = urlsplit(nlu_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    yield reader, writer
    writer.close()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: t", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *extra]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Reply:
    """Send 40 kB more of a line that never ends, in separate reads; return the answer."""
    for _ in range(10):
        await asyncio.sleep(0.02)
        writer.write(b"z" * 4096)
    return await read_reply(reader)


def continue_head(body: bytes) -> bytes:
    """The head of a parse request that waits for `100 Continue` before sending `body`."""
    return post("/model/parse", b"", "Expect: 100-continue").replace(
        b"Content-Length: 0", f"Content-Length: {len(body)}".encode()
    )


def parse_body(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(conn: Conn) -> None:
    reader, writer = conn
    # three requests in one write: the answers must come back in the same order
    writer.write(
        post("/model/parse", parse_body("pin bị phồng"))
        + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        + post("/model/parse", parse_body("how do I return my laptop"))
    )
    first, second, third = [await read_reply(reader) for _ in range(3)]
    assert first.status == second.status == third.status == 200
    assert first.json()["text"] == "pin bị phồng"
    assert second.json() == {"status": "ok"}
    assert third.json()["text"] == "how do I return my laptop"
    assert first.headers["content-type"].startswith("application/json")
    assert "date" in first.headers and "connection" not in first.headers
    # and the connection is still usable afterwards
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await read_reply(reader)).status == 200


async def test_chunked_body_and_expect_continue(conn: Conn) -> None:
    reader, writer = conn
    body = parse_body("máy bị nổ")
    writer.write(
        b"POST /model/parse HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    half = len(body) // 2
    for part in (body[:half], body[half:]):
        writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    writer.write(b"0\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.json()["text"] == "máy bị nổ"


@pytest.mark.parametrize(
    "raw",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"POST /model/parse HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"POST /model/parse HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ],
    ids=["garbage", "two-lengths", "bad-header", "upgrade"],
)
async def test_malformed_requests_get_400_json_and_a_hang_up(conn: Conn, raw: bytes) -> None:
    reader, writer = conn
    writer.write(raw)
    reply = await read_reply(reader)
    assert reply.status == 400
    assert reply.json()["status"] == "failure" and reply.json()["code"] == 400
    assert reply.headers["connection"] == "close"
    assert await hung_up(reader)


async def test_oversized_head_and_bodies_are_refused_before_reading_them(
    conn: Conn, settings: Settings
) -> None:
    reader, writer = conn
    limit = settings.nlu.max_body_bytes
    # a declared length over the limit is refused without waiting for the body
    writer.write(f"POST /model/parse HTTP/1.1\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
    reply = await read_reply(reader)
    assert reply.status == 413 and f"larger than {limit} bytes" in reply.json()["message"]
    assert await hung_up(reader)


async def test_oversized_chunked_body_and_headers(nlu_url: str, settings: Settings) -> None:
    url = urlsplit(nlu_url)
    limit = settings.nlu.max_body_bytes
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"POST /model/parse HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 4096
    for _ in range(limit // len(chunk) + 2):  # no length declared: counted as it arrives
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    reply = await read_reply(reader)
    assert reply.status == 413
    writer.close()

    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.status == 431 and "headers exceed" in reply.json()["message"]
    assert await hung_up(reader)
    writer.close()


async def test_unknown_path_and_wrong_method(conn: Conn) -> None:
    reader, writer = conn
    writer.write(b"GET /nope?x=1 HTTP/1.1\r\nHost: t\r\n\r\nDELETE /model/parse HTTP/1.1\r\n\r\n")
    missing, wrong = await read_reply(reader), await read_reply(reader)
    assert missing.status == 404 and missing.json()["code"] == 404
    assert wrong.status == 405 and wrong.headers["allow"] == "POST"
    # routing errors are answers, not protocol errors: the connection stays open
    writer.write(b"GET /healthz?probe=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await read_reply(reader)).status == 200


async def test_http10_closes_unless_keep_alive_is_asked_for(nlu_url: str) -> None:
    url = urlsplit(nlu_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert await hung_up(reader)
    writer.close()

    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.headers["connection"] == "keep-alive"
    writer.write(b"GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (await read_reply(reader)).status == 200
    writer.close()


async def test_client_gone_mid_parse_does_not_hurt_others(nlu_url: str) -> None:
    url = urlsplit(nlu_url)
    for _ in range(20):  # requests whose clients vanish before the answer
        _, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(post("/model/parse", parse_body("ship mất bao lâu")))
        writer.transport.abort()
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(post("/model/parse", parse_body("ship mất bao lâu")))
    assert (await read_reply(reader)).status == 200
    writer.close()


@pytest.fixture(scope="module")
async def impatient_service(settings: Settings, nlu_model: Path) -> AsyncIterator[str]:
    service = NLUServiceProcess(
        settings, nlu_model, port=0,
        extra_args=("--request-timeout-s", "0.5", "--keep-alive-s", "1"),
    )  # fmt: skip
    await service.start(timeout=180)
    yield service.url
    await service.stop()


async def test_slow_and_idle_clients_are_cut_off(impatient_service: str) -> None:
    url = urlsplit(impatient_service)
    # slow loris: a request that never finishes arriving gets 408 and a hang-up
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b'POST /model/parse HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n{"te')
    reply = await read_reply(reader)
    assert reply.status == 408 and "within 0.5 s" in reply.json()["message"]
    assert await hung_up(reader)
    writer.close()
    # an idle keep-alive connection is closed without a word
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await read_reply(reader)).status == 200
    assert await hung_up(reader)
    writer.close()


async def test_head_answers_without_a_body_and_keeps_framing(conn: Conn) -> None:
    reader, writer = conn
    writer.write(
        b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 ")
    # the next bytes are the GET's answer, not the HEAD's body; the HEAD announced its length
    get = await read_reply(reader)
    assert get.status == 200 and get.json() == {"status": "ok"}
    assert f"Content-Length: {len(get.body)}\r\n".encode() in head
    writer.write(b"PUT /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    assert (await read_reply(reader)).headers["allow"] == "GET, HEAD"


async def test_header_line_that_never_ends_gets_431(conn: Conn) -> None:
    reader, writer = conn
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Endless: ")
    reply = await endless_line(reader, writer)
    assert reply.status == 431 and "headers exceed" in reply.json()["message"]
    assert await hung_up(reader)


async def test_expectations_other_than_continue_get_417(conn: Conn) -> None:
    reader, writer = conn
    writer.write(post("/model/parse", parse_body("hi"), "Expect: teapot"))
    reply = await read_reply(reader)
    assert reply.status == 417 and "teapot" in reply.json()["message"]


async def test_continue_is_not_sent_ahead_of_an_earlier_answer(conn: Conn) -> None:
    reader, writer = conn
    body = parse_body("sạc không vào")
    writer.write(post("/model/parse", parse_body("pin bị phồng")) + continue_head(body))
    reply = await read_reply(reader)  # a "100 Continue" here would be out of order
    assert reply.status == 200 and reply.json()["text"] == "pin bị phồng"
    writer.write(body)
    while (reply := await read_reply(reader)).status == 100:
        pass
    assert reply.status == 200 and reply.json()["text"] == "sạc không vào"


async def test_half_closed_client_still_gets_its_answer(conn: Conn) -> None:
    reader, writer = conn
    writer.write(post("/model/parse", parse_body("đổi trả laptop thế nào")))
    writer.write_eof()  # done sending; still reading
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.json()["text"] == "đổi trả laptop thế nào"
    assert await hung_up(reader)


async def test_pipelining_without_reading_is_bounded(conn: Conn) -> None:
    reader, writer = conn
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 1000)  # one write, 1000 requests
    statuses = []
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionResetError):
        while True:
            statuses.append((await read_reply(reader)).status)
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}
    assert len(statuses) < 200  # the rest were never queued


async def test_client_that_stops_reading_is_dropped(impatient_service: str) -> None:
    url = urlsplit(impatient_service)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
    sock.connect((url.hostname, url.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    big = post("/model/parse", parse_body("a " * 999))  # each answer is about 14 kB
    sent = 0
    # 500 requests, about 7 MB of answers: more than socket buffers hold. In paced writes
    # of 20, so the server's read-ahead pause (32 queued) stops it well before the 429 cap
    # (128): what ends the connection here must be the answer deadline
    for _ in range(25):
        writer.write(big * 20)
        sent += 20
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)  # read nothing for 6x the 0.5 s deadline

    async def read_until_closed() -> bytes:
        got = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                got += chunk
        return got

    # the server gave up on us and dropped the connection; a server still waiting would
    # now answer every request
    got = await asyncio.wait_for(read_until_closed(), 10)
    assert got.count(b"HTTP/1.1 200 ") < sent
    writer.close()


async def test_large_heads_and_bursts_arriving_piecemeal_are_not_refused(conn: Conn) -> None:
    reader, writer = conn
    # a 9 kB head (under the 16 kB limit), one header line per read
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    for i in range(9):
        await asyncio.sleep(0.02)
        writer.write(f"X-Fill-{i}: {'v' * 1000}\r\n".encode())
    writer.write(b"\r\n")
    assert (await read_reply(reader)).status == 200
    # 80 pipelined requests (19 kB) cut into reads at arbitrary points
    burst = (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"p" * 200 + b"\r\n\r\n") * 80
    for start in range(0, len(burst), 1500):
        writer.write(burst[start : start + 1500])
        await asyncio.sleep(0.005)
    statuses = [(await read_reply(reader)).status for _ in range(80)]
    assert set(statuses) == {200}


async def test_trailer_line_that_never_ends_is_cut_off(conn: Conn) -> None:
    reader, writer = conn
    writer.write(b"POST /model/parse HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = parse_body("pin bị phồng")
    writer.write(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\nX-Trailer: ")
    reply = await endless_line(reader, writer)
    assert reply.status == 400 and "trailer line exceeds" in reply.json()["message"]
    assert await hung_up(reader)


async def test_held_back_continue_is_sent_once_earlier_answers_are_out(conn: Conn) -> None:
    reader, writer = conn
    body = parse_body("sạc không vào")
    writer.write(post("/model/parse", parse_body("pin bị phồng")) + continue_head(body))
    assert (await read_reply(reader)).status == 200
    # the client waits for 100 before sending its body: it must come without the body
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(body)
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.json()["text"] == "sạc không vào"
