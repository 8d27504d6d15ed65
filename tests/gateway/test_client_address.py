"""Per-client limits key on the client behind our load balancers, never on a header a
client can forge: X-Forwarded-For / Forwarded count only from a configured trusted proxy."""

from __future__ import annotations

import json

import aiohttp
from aiohttp.test_utils import make_mocked_request

from bot.core.client_address import client_address, parse_networks
from tests.support import backend_settings, running_gateway, with_section

LB = parse_networks(["10.0.0.0/8"])


def _req(peer: str, **headers: str):  # type: ignore[no-untyped-def]
    class Transport:
        def get_extra_info(self, name: str, default=None):  # type: ignore[no-untyped-def]
            return (peer, 12345) if name == "peername" else default

    return make_mocked_request("GET", "/", headers=headers, transport=Transport())


def test_the_client_behind_trusted_proxies() -> None:
    assert (
        client_address(_req("10.1.2.3", **{"X-Forwarded-For": "203.0.113.7"}), LB) == "203.0.113.7"
    )
    # a client's own forged hop before the real one is not believed
    xff = {"X-Forwarded-For": "1.1.1.1, 203.0.113.7, 10.9.9.9"}
    assert client_address(_req("10.1.2.3", **xff), LB) == "203.0.113.7"
    fwd = {"Forwarded": 'for=198.51.100.4;proto=https, for="[2001:db8::1]:443"'}
    assert client_address(_req("10.1.2.3", **fwd), LB) == "2001:db8::1"
    # from an untrusted peer the header is ignored
    assert (
        client_address(_req("203.0.113.9", **{"X-Forwarded-For": "1.2.3.4"}), LB) == "203.0.113.9"
    )
    assert client_address(_req("10.1.2.3", **{"X-Forwarded-For": "junk"}), LB) == "10.1.2.3"
    assert client_address(_req("10.1.2.3"), ()) == "10.1.2.3"


async def _open(http: aiohttp.ClientSession, url: str, n: int, forwarded: bool) -> list[str]:
    """Open n widget sockets (kept open); what each got first: welcome or an error code."""
    outcomes, sockets = [], []
    for i in range(n):
        headers = {"X-Forwarded-For": f"198.51.100.{i + 1}"} if forwarded else {}
        ws = await http.ws_connect(url, headers=headers)
        sockets.append(ws)
        await ws.send_json({"type": "hello", "locale": "vi"})
        frame = json.loads((await ws.receive(timeout=10)).data)
        outcomes.append(frame.get("code") or frame["type"])
    for ws in sockets:
        await ws.close()
    return outcomes


async def test_visitors_behind_the_load_balancer_are_not_one_address(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("sqlite", tmp_path) as s:
        limit = s.widget.max_connections_per_ip
        behind_lb = with_section(s, "gateway", trusted_proxies=["127.0.0.1/32"])
        async with running_gateway(behind_lb, nlu_url) as g, aiohttp.ClientSession() as http:
            got = await _open(http, g.ws_url, limit + 5, forwarded=True)
            assert got == ["welcome"] * (limit + 5)  # each visitor has its own address
        async with running_gateway(s, nlu_url) as g, aiohttp.ClientSession() as http:
            # no trusted proxy configured: the header is a client's claim, and ignored
            got = await _open(http, g.ws_url, limit + 1, forwarded=True)
            assert got[:limit] == ["welcome"] * limit and got[limit] == "too_many_connections"
