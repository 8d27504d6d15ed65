"""Canned responses over HTTP (handoff/web/canned_api.py), real gateway, SQLite and PostgreSQL:
supervisors manage them, agents search them (folded: no diacritics needed), nobody else writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.support import RunningGateway

PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def signed_in(g: RunningGateway, username: str, role: str) -> AsyncIterator[Any]:
    """An HTTP session logged in as a new account of `role`; `.csrf` holds its CSRF token."""
    await g.gw.desk.accounts.add(username, PASSWORD, role=role, queues=["general"])
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(g.url, cookie_jar=jar) as http:
        resp = await http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        http.csrf = (await resp.json())["csrf_token"]  # type: ignore[attr-defined]
        yield http


def _h(http: Any) -> dict[str, str]:
    return {"X-CSRF-Token": http.csrf}


async def test_supervisor_manages_and_agent_searches(gateway: RunningGateway) -> None:
    async with (
        signed_in(gateway, "sup", "supervisor") as sup,
        signed_in(gateway, "an", "agent") as agent,
    ):
        made = []
        for body in (
            {"language": "vi", "title": "Bảo hành", "text": "Sản phẩm được bảo hành 12 tháng."},
            {"language": "en", "title": "Warranty", "text": "Every product has 12 months."},
            {"language": "vi", "title": "Chào hỏi", "text": "Xin chào, em có thể giúp gì ạ?"},
        ):
            resp = await sup.post("/api/supervisor/canned", json=body, headers=_h(sup))
            assert resp.status == 201, await resp.text()
            made.append((await resp.json())["canned"])
        assert [m["title"] for m in made] == ["Bảo hành", "Warranty", "Chào hỏi"]

        async def titles(**query: str) -> list[str]:
            resp = await agent.get("/api/agent/canned", params=query)
            assert resp.status == 200, await resp.text()
            return [c["title"] for c in (await resp.json())["canned"]]

        assert await titles() == ["Bảo hành", "Chào hỏi", "Warranty"]
        assert await titles(q="BAO HANH") == ["Bảo hành"]  # folded: case and diacritics
        assert await titles(q="12") == ["Bảo hành", "Warranty"]  # text matches too
        assert await titles(q="12", language="en") == ["Warranty"]
        assert await titles(q="giup") == ["Chào hỏi"]
        assert await titles(q="nothing like this") == []

        cid = made[1]["id"]
        edit = {"language": "en", "title": "Warranty (EN)", "text": "12 months, free repair."}
        resp = await sup.put(f"/api/supervisor/canned/{cid}", json=edit, headers=_h(sup))
        assert resp.status == 200 and (await resp.json())["canned"]["title"] == "Warranty (EN)"
        assert await titles(q="repair") == ["Warranty (EN)"]

        resp = await sup.delete(f"/api/supervisor/canned/{cid}", headers=_h(sup))
        assert resp.status == 200
        assert await titles(language="en") == []
        resp = await sup.delete(f"/api/supervisor/canned/{cid}", headers=_h(sup))
        assert resp.status == 404


async def test_agents_cannot_write_and_writes_need_csrf(gateway: RunningGateway) -> None:
    body = {"language": "vi", "title": "Xin chào", "text": "Chào anh/chị"}
    async with (
        signed_in(gateway, "sup", "supervisor") as sup,
        signed_in(gateway, "an", "agent") as agent,
    ):
        resp = await agent.post("/api/supervisor/canned", json=body, headers=_h(agent))
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
        resp = await sup.post("/api/supervisor/canned", json=body)  # no CSRF header
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf"
        resp = await sup.post("/api/supervisor/canned", json=body, headers={"X-CSRF-Token": "x"})
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf"
        resp = await sup.post("/api/supervisor/canned", json=body, headers=_h(sup))
        assert resp.status == 201
        row = (await resp.json())["canned"]
        for method in (agent.put, agent.delete):
            resp = await method(f"/api/supervisor/canned/{row['id']}", json=body, headers=_h(agent))
            assert resp.status == 403
        resp = await agent.get("/api/agent/canned")
        assert [c["title"] for c in (await resp.json())["canned"]] == ["Xin chào"]
    async with aiohttp.ClientSession(gateway.url) as anonymous:
        resp = await anonymous.get("/api/agent/canned")
        assert resp.status == 401


async def test_bad_input_is_refused_with_a_clear_message(gateway: RunningGateway) -> None:
    async with signed_in(gateway, "sup", "supervisor") as sup:

        async def post(body: Any) -> tuple[int, str]:
            resp = await sup.post("/api/supervisor/canned", json=body, headers=_h(sup))
            return resp.status, (await resp.json())["error"]["message"]

        assert await post({"language": "fr", "title": "x", "text": "y"}) == (
            400,
            "language must be 'vi' or 'en'",
        )
        assert await post({"language": "vi", "title": " \x00 ", "text": "y"}) == (
            400,
            "title must not be empty",
        )
        assert await post({"language": "vi", "title": "t", "text": 5}) == (
            400,
            "text must be a string",
        )
        assert await post({"language": "vi", "title": "t", "text": "y" * 2001}) == (
            413,
            "text is longer than 2000 characters",
        )
        assert (await post(["not", "an", "object"]))[0] == 400
        ok = {"language": "vi", "title": "Trùng", "text": '=HYPERLINK("http://x")'}
        resp = await sup.post("/api/supervisor/canned", json=ok, headers=_h(sup))
        assert resp.status == 201
        assert (await resp.json())["canned"]["text"] == ok["text"]  # stored as plain text
        status, message = await post(ok)
        assert status == 409 and "Trùng" in message
        resp = await sup.put("/api/supervisor/canned/abc", json=ok, headers=_h(sup))
        assert resp.status == 404
        resp = await sup.get("/api/agent/canned", params={"language": "xx"})
        assert resp.status == 400
