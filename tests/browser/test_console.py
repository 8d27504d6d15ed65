"""The agent console (bot/static/console.*) and supervisor view in a real browser, with a real
customer in the widget in a second browser context, against the real gateway (real Redis,
SQLite and PostgreSQL, the real NLU model).

Screenshots for the README are written to docs/screenshots/{console,supervisor}.png.
"""

from __future__ import annotations

import asyncio
import itertools
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.auth.accounts import Principal
from bot.channels.widget_client import WidgetClient, wait_for
from bot.core.settings import OpeningHours
from handoff.canned import CannedInput, CannedResponses
from tests.browser import browser_fixtures
from tests.browser.test_widget import ensure_open, open_page, type_and_send
from tests.support import (
    BACKENDS,
    RunningGateway,
    backend_settings,
    running_gateway,
    screenshot_dir,
)

browser = browser_fixtures.browser  # the fixture, made visible to this module

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "console test password 1"
TIMEOUT_MS = 30_000
HAZARD = "máy bị phồng pin, nóng ran và bốc khói"  # critical: safety queue
ASK_PERSON = "I want to talk to a person"  # request_human: general queue, normal
XSS = "<img src=x onerror=alert(1)> và <script>alert(2)</script>"
LINKS = "xem https://example.com/hoa-don?id=1 và javascript:alert(3)"
_names = itertools.count(1)


def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


@dataclass
class Console:
    g: RunningGateway

    async def account(self, role: str = "agent", queues: tuple[str, ...] = ()) -> Any:
        name = f"{role[:3]}{next(_names)}"
        return await self.g.gw.desk.accounts.add(
            name,
            PASSWORD,
            role=role,
            display_name=f"{role.title()} {name}",
            queues=list(queues or self.g.settings.triage.queues),
            max_chats=3,
        )

    async def presence(self, account: Any, status: str) -> None:
        await self.g.gw.desk.set_presence(Principal.of(account), status)

    async def conversation(self, cid: str) -> Any:
        return await self.g.gw.db.get_conversation(cid)


@pytest.fixture(scope="module", params=BACKENDS)
async def console(request, tmp_path_factory, nlu_url: str) -> AsyncIterator[Console]:  # type: ignore[no-untyped-def]
    """A gateway of its own: people always "on duty" (no after-hours callback offers) and a
    short SLA for normal chats so a breach happens within a test."""
    async with backend_settings(request.param, tmp_path_factory.mktemp("console")) as s:
        handoff = s.handoff.model_copy(
            update={
                "opening_hours": OpeningHours(start="00:00", end="24:00"),
                "sla_first_response_s": {**s.handoff.sla_first_response_s, "normal": 4.0},
            }
        )
        s = s.model_copy(update={"handoff": handoff})
        async with running_gateway(s, nlu_url) as g:
            canned = CannedResponses(g.gw.db)
            for lang, title, text in (
                (
                    "vi",
                    "Bảo hành pin",
                    "Pin được bảo hành 12 tháng, anh/chị mang máy đến cửa hàng.",
                ),
                ("en", "Battery warranty", "Batteries have a 12-month warranty."),
            ):
                await canned.add(CannedInput(lang, title, text), by="test")
            yield Console(g)


async def sign_in(browser: Any, url: str, account: Any, path: str = "/console") -> tuple[Any, Any]:
    """A new browser context signed in through the login page, on `path`, ready."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900}, locale="vi-VN")
    page = await context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    await page.goto(url + path)
    assert "/login" in page.url  # no session: sent to the login page
    await page.fill("input[name=username]", account.username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(url + path)
    await page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
    return context, page


async def console_state(page: Any) -> dict[str, Any]:
    return await page.evaluate("() => window.CarelineConsole.state()")


async def open_listed(page: Any, item: str, cid: str) -> None:
    """Open a chat from a list item (`item`: a selector for the element to click). The lists
    re-render and re-sort while on screen (a chat past its SLA moves up; an unread count
    arrives), so a click at an element's coordinates can land on a row that has just moved
    under it; the click is dispatched on the element itself, and the chat that opened is
    checked."""
    target = page.locator(item)
    await target.wait_for(timeout=TIMEOUT_MS)
    await target.dispatch_event("click")
    await page.wait_for_function(
        "(cid) => window.CarelineConsole.state().open === cid", arg=cid, timeout=TIMEOUT_MS
    )


async def view_waiting(page: Any, cid: str) -> None:
    await open_listed(page, f"#waiting li[data-cid='{cid}'] button:has-text('View')", cid)


async def open_mine(page: Any, cid: str) -> None:
    await open_listed(page, f"#my-chats li[data-cid='{cid}']", cid)


async def customer_messages(page: Any) -> list[dict[str, Any]]:
    return (await page.evaluate("() => window.Careline.state()"))["messages"]


async def widget_conversation(page: Any) -> str:
    await page.wait_for_function("() => window.Careline.state().conversationId", timeout=TIMEOUT_MS)
    return (await page.evaluate("() => window.Careline.state()"))["conversationId"]


async def fetch(page: Any, method: str, path: str, body: Any = None, csrf: bool = True) -> int:
    """A same-origin request from the page (its cookies), with or without the CSRF header."""
    return await page.evaluate(
        """async ([method, path, body, csrf]) => {
            const s = await (await fetch('/api/auth/session')).json();
            const headers = {'Content-Type': 'application/json'};
            if (csrf) headers['X-CSRF-Token'] = s.csrf_token;
            const r = await fetch(path, {method, headers,
                body: body === null ? undefined : JSON.stringify(body)});
            return r.status;
        }""",
        [method, path, body, csrf],
    )


async def test_escalation_claim_chat_and_resolve(browser: Any, console: Console) -> None:
    url = console.g.url
    agent = await console.account("agent")
    agent_ctx, agent_page = await sign_in(browser, url, agent)
    customer_ctx, customer, customer_errors = await open_page(browser, url)
    try:
        assert (await console_state(agent_page))["presence"] == "away"

        # The customer reports a hazard: critical, straight to the safety queue.
        await ensure_open(customer)
        await type_and_send(customer, HAZARD)
        cid = await widget_conversation(customer)

        # ... and the agent sees it appear live, first in line, with badge, reason and SLA.
        row = agent_page.locator(f"#waiting li[data-cid='{cid}']")
        await row.wait_for(timeout=TIMEOUT_MS)
        assert await row.get_attribute("data-severity") == "critical"
        assert (await row.locator(".badge").text_content()) == "critical"
        assert (await row.locator(".reasons").text_content()).strip() not in ("", "—")
        await agent_page.wait_for_function(
            "(cid) => document.querySelector(`#waiting li[data-cid='${cid}'] .sla`)"
            ".textContent.startsWith('SLA ')",
            arg=cid,
        )
        assert (await agent_page.locator("#waiting li").first.get_attribute("data-cid")) == cid
        seen = await console_state(agent_page)
        assert seen["alerts"] >= 1 and "Critical" in seen["title"], seen

        # Claim: the away agent goes online and takes it.
        await row.locator("button.claim").click()
        await agent_page.wait_for_selector("#chat-state[data-state='WITH_AGENT']")
        state = await console_state(agent_page)
        assert state["presence"] == "online" and cid in state["chats"] and state["open"] == cid
        assert (await console.conversation(cid)).agent_id == agent.id
        await agent_page.wait_for_selector(f"#my-chats li[data-cid='{cid}']")

        # Customer → agent, with the typing indicator first.
        await customer.locator("careline-widget >> textarea").press_sequentially("alo", delay=30)
        await agent_page.wait_for_selector("#typing:not([hidden])", timeout=TIMEOUT_MS)
        await customer.locator("careline-widget >> textarea").fill(
            "Máy em là Galaxy A55, mua tháng 3"
        )
        await customer.locator("careline-widget >> textarea").press("Enter")
        await agent_page.locator("#log li.customer .bubble", has_text="Galaxy A55").wait_for(
            timeout=TIMEOUT_MS
        )

        # Agent → customer; the console shows the delivery state once stored.
        await agent_page.fill("#text", "Anh/chị rút sạc và để máy xa đồ dễ cháy ngay nhé.")
        await agent_page.press("#text", "Enter")
        mine = agent_page.locator("#log li.agent", has_text="rút sạc")
        await mine.locator(".delivery", has_text="sent").wait_for(timeout=TIMEOUT_MS)
        # The first human reply met the SLA: the card stops counting down.
        await agent_page.locator("#card [data-deadline]").wait_for(state="detached")
        await customer.wait_for_function(
            """() => window.Careline.state().messages.some(
                (m) => m.sender === 'agent' && m.text.includes('rút sạc'))""",
            timeout=TIMEOUT_MS,
        )

        # A canned response, found without diacritics, inserted and sent.
        await agent_page.click("#canned summary")
        await agent_page.fill("#canned-q", "bao hanh pin")
        await agent_page.locator(".canned-item", has_text="Bảo hành pin").click()
        assert "12 tháng" in await agent_page.input_value("#text")
        await agent_page.press("#text", "Enter")
        await customer.wait_for_function(
            """() => window.Careline.state().messages.some(
                (m) => m.sender === 'agent' && m.text.includes('12 tháng'))""",
            timeout=TIMEOUT_MS,
        )

        # An internal note: in the console, never at the customer.
        await agent_page.check("input[name=mode][value=note]")
        await agent_page.fill("#text", "Khách hoảng, ưu tiên gọi lại")
        await agent_page.press("#text", "Enter")
        await agent_page.locator("#log li.note", has_text="ưu tiên gọi lại").wait_for()
        await agent_page.check("input[name=mode][value=reply]")

        # The context card tells the story.
        card = agent_page.locator("#card")
        await card.locator("text=Why it came to a person").wait_for()
        assert "safety" in (await card.text_content() or "")

        await agent_page.mouse.move(0, 0)
        await agent_page.screenshot(
            path=str(screenshot_dir() / "console.png"), animations="disabled"
        )

        # Resolve (two clicks: it ends the agent's part) → the customer is asked the survey.
        await agent_page.click("#resolve")
        await agent_page.click("#resolve")
        await agent_page.wait_for_selector("#chat-state[data-state='SURVEY']", timeout=TIMEOUT_MS)
        conv = await wait_for(lambda: _in_state(console, cid, "SURVEY"), timeout=30)
        assert conv.resolved_at is not None
        await customer.wait_for_function(
            """() => window.Careline.state().messages.some((m) => m.sender === 'bot'
                && m.text.normalize('NFC').includes('dễ dàng đến mức nào'))""",
            timeout=TIMEOUT_MS,
        )  # the CES question, with its answer buttons
        chips = customer.locator("careline-widget >> .qr button")
        assert len(await chips.all_text_contents()) >= 7
        assert (await console_state(agent_page))["chats"] == []
        texts = [nfc(m["text"]) for m in await customer_messages(customer)]
        assert not any("ưu tiên gọi lại" in t for t in texts), texts  # the note stayed inside
        assert not agent_page.errors and not customer_errors, (agent_page.errors, customer_errors)  # type: ignore[attr-defined]
    finally:
        await console.presence(agent, "offline")
        await agent_ctx.close()
        await customer_ctx.close()


async def test_customer_markup_is_inert_text_in_the_console(browser: Any, console: Console) -> None:
    url = console.g.url
    agent = await console.account("agent", queues=("general",))
    agent_ctx, agent_page = await sign_in(browser, url, agent)
    dialogs: list[str] = []
    dismissals: list[asyncio.Future[Any]] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dismissals.append(asyncio.ensure_future(dialog.dismiss()))

    agent_page.on("dialog", on_dialog)
    customer = WidgetClient(console.g.ws_url)
    try:
        await customer.connect()
        await customer.say(ASK_PERSON)
        await customer.expect(
            lambda f: f["type"] == "event" and f["event"].get("state") == "WAITING_AGENT",
            timeout=30,
        )
        cid = customer.conversation_id
        assert cid
        await view_waiting(agent_page, cid)
        await agent_page.wait_for_selector("#chat-state[data-state='WAITING_AGENT']")

        # Live, while the agent looks at the chat.
        await customer.say(XSS)
        await customer.say(LINKS)
        bubbles = agent_page.locator("#log li.customer .bubble")
        await bubbles.filter(has_text="javascript:alert(3)").wait_for(timeout=TIMEOUT_MS)
        for attempt in ("live", "after reload"):
            if attempt == "after reload":
                await agent_page.reload()
                await agent_page.wait_for_selector("body[data-ready='1']")
                await view_waiting(agent_page, cid)
                await bubbles.filter(has_text="javascript:alert(3)").wait_for(timeout=TIMEOUT_MS)
            texts = [nfc(t) for t in await bubbles.all_text_contents()]
            assert nfc(XSS) in texts, (attempt, texts)
            found = await agent_page.evaluate(
                """() => ({
                    bad: document.querySelectorAll(
                        'img, script:not([src]), iframe, [onerror]').length,
                    inLog: document.querySelector('#log').querySelectorAll('img, script').length,
                    links: [...document.querySelectorAll('#log a')].map(
                        (a) => [a.href, a.rel, a.target]),
                })"""
            )
            assert found["bad"] == 0 and found["inLog"] == 0, (attempt, found)
            assert found["links"] == [
                ["https://example.com/hoa-don?id=1", "noopener noreferrer nofollow", "_blank"]
            ], (attempt, found)
            assert dialogs == [], (attempt, dialogs)
        csp = (await agent_page.request.get(url + "/console")).headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert not agent_page.errors, agent_page.errors  # type: ignore[attr-defined]
    finally:
        await customer.close()
        await agent_ctx.close()


async def test_agents_are_confined_to_their_chats_and_csrf_is_required(
    browser: Any, console: Console
) -> None:
    url = console.g.url
    holder = await console.account("agent", queues=("general",))
    other = await console.account("agent", queues=("general",))
    customer = WidgetClient(console.g.ws_url)
    holder_ctx, holder_page = await sign_in(browser, url, holder)
    other_ctx, other_page = await sign_in(browser, url, other)
    try:
        await console.presence(holder, "online")  # the chat is auto-assigned to the holder
        await customer.connect()
        await customer.say(ASK_PERSON)
        await customer.expect(lambda f: f["type"] == "ack")
        conv = await wait_for(lambda: _held_by(console, customer, holder.id), timeout=30)
        cid = conv.id
        chat = f"/api/agent/conversations/{cid}"

        # Another agent: 403 on the chat and on every supervisor endpoint and page.
        assert await fetch(other_page, "GET", chat) == 403
        assert (
            await fetch(
                other_page, "POST", chat + "/messages", {"text": "hi", "client_msg_id": "x1"}
            )
            == 403
        )
        assert await fetch(other_page, "POST", chat + "/resolve", {}) == 403
        for path in ("/api/supervisor/agents", "/api/supervisor/breaches", "/api/supervisor/chats"):
            assert await fetch(other_page, "GET", path) == 403, path
        assert (
            await fetch(
                other_page,
                "POST",
                f"/api/supervisor/conversations/{cid}/assign",
                {"agent_id": other.id},
            )
            == 403
        )
        assert (
            await fetch(
                other_page,
                "POST",
                "/api/supervisor/canned",
                {"language": "vi", "title": "t", "text": "x"},
            )
            == 403
        )
        page_resp = await other_page.goto(url + "/console/supervisor")
        assert page_resp is not None and page_resp.status == 403
        # Watching it over the WebSocket is refused too.
        refused = await other_page.evaluate(
            """(cid) => new Promise((done) => {
                const ws = new WebSocket(`ws://${location.host}/ws/agent`);
                ws.onmessage = (e) => { const f = JSON.parse(e.data);
                    if (f.type === 'hello')
                        ws.send(JSON.stringify({type: 'watch', conversation_id: cid}));
                    if (f.type === 'error' || f.type === 'watching') { ws.close(); done(f); } };
            })""",
            cid,
        )
        assert refused["type"] == "error" and refused["code"] == "forbidden", refused

        # The holder: state changes without the CSRF header are refused, with it they pass.
        body = {"text": "Chào anh", "client_msg_id": "csrf-1"}
        assert await fetch(holder_page, "POST", chat + "/messages", body, csrf=False) == 403
        assert (
            await fetch(holder_page, "POST", "/api/agent/presence", {"status": "away"}, csrf=False)
            == 403
        )
        assert await fetch(holder_page, "POST", "/api/auth/logout", None, csrf=False) == 403
        assert await fetch(holder_page, "GET", chat) == 200
        assert await fetch(holder_page, "POST", chat + "/messages", body) == 201
        got = await customer.expect(
            lambda f: (
                f["type"] == "event" and f["event"].get("message", {}).get("sender") == "agent"
            ),
            timeout=15,
        )
        assert got["event"]["message"]["text"] == "Chào anh"
    finally:
        await console.presence(holder, "offline")
        await customer.close()
        await holder_ctx.close()
        await other_ctx.close()


async def _held_by(console: Console, customer: WidgetClient, agent_id: str) -> Any:
    if not customer.conversation_id:
        return None
    conv = await console.conversation(customer.conversation_id)
    return conv if conv and conv.state == "WITH_AGENT" and conv.agent_id == agent_id else None


async def test_supervisor_sees_breaches_live_and_reassigns(browser: Any, console: Console) -> None:
    url = console.g.url
    sup = await console.account("supervisor")
    first = await console.account("agent", queues=("general",))
    second = await console.account("agent", queues=("general",))
    sup_ctx, page = await sign_in(browser, url, sup, "/console/supervisor")
    customer = WidgetClient(console.g.ws_url)
    try:
        await customer.connect()
        await customer.say(ASK_PERSON)
        await customer.expect(
            lambda f: f["type"] == "event" and f["event"].get("state") == "WAITING_AGENT",
            timeout=30,
        )
        cid = customer.conversation_id
        assert cid
        row = page.locator(f"#chats tr[data-cid='{cid}']")
        await row.wait_for(timeout=TIMEOUT_MS)
        # Nobody answers within the (test) 4 s SLA: the breach shows up live.
        await page.locator("#breaches tr.breach-new").first.wait_for(timeout=TIMEOUT_MS)
        assert "general" in (
            await page.locator("#breaches tr.breach-new").first.text_content() or ""
        )

        await console.presence(first, "online")  # auto-assigned to `first`
        await row.locator("td.agent", has_text=first.display_name).wait_for(timeout=TIMEOUT_MS)
        await console.presence(second, "online")
        await page.locator(f"#agents tr[data-agent='{second.id}'] .dot.online").wait_for(
            timeout=TIMEOUT_MS
        )
        await row.locator("select").select_option(second.id)
        await row.locator("button", has_text="Assign").click()
        await row.locator("td.agent", has_text=second.display_name).wait_for(timeout=TIMEOUT_MS)
        conv = await console.conversation(cid)
        assert conv.agent_id == second.id and conv.state == "WITH_AGENT"

        # Canned responses are managed here: add one (markup stays text), edit, delete another.
        await page.select_option("#canned-language", "en")
        await page.fill("#canned-title", "Callback <b>soon</b>")
        await page.fill("#canned-text", "We will call you back within 15 minutes.")
        await page.click("#canned-save")
        added = page.locator("#canned-rows tr", has_text="Callback <b>soon</b>")
        await added.wait_for(timeout=TIMEOUT_MS)
        assert await page.locator("#canned-rows b").count() == 0
        await added.locator("button", has_text="Edit").click()
        await page.fill("#canned-text", "We will call you back within 10 minutes.")
        await page.click("#canned-save")
        await page.locator("#canned-rows td", has_text="within 10 minutes").wait_for()
        found = await CannedResponses(console.g.gw.db).search("callback", "en")
        assert [(c.title, c.text) for c in found] == [
            ("Callback <b>soon</b>", "We will call you back within 10 minutes.")
        ]
        doomed = page.locator("#canned-rows tr", has_text="Battery warranty")
        await doomed.locator("button.delete").click()
        await doomed.locator("button.delete").click()
        await doomed.wait_for(state="detached", timeout=TIMEOUT_MS)
        assert await CannedResponses(console.g.gw.db).search("battery") == []

        await page.mouse.move(0, 0)
        await page.screenshot(path=str(screenshot_dir() / "supervisor.png"), animations="disabled")
        assert not page.errors, page.errors  # type: ignore[attr-defined]
    finally:
        for a in (first, second):
            await console.presence(a, "offline")
        await customer.close()
        await sup_ctx.close()


async def test_transfer_to_a_queue_and_release_to_the_bot(browser: Any, console: Console) -> None:
    url = console.g.url
    agent = await console.account("agent", queues=("general",))
    agent_ctx, page = await sign_in(browser, url, agent)
    customers = [WidgetClient(console.g.ws_url) for _ in range(2)]
    try:
        await page.click("#go-online")
        await page.wait_for_selector("body[data-presence='online']")
        cids = []
        for customer in customers:
            await customer.connect()
            await customer.say(ASK_PERSON)
            await customer.expect(lambda f: f["type"] == "ack")
            conv = await wait_for(lambda c=customer: _held_by(console, c, agent.id), timeout=30)
            cids.append(conv.id)
        moved, released = cids
        for cid in cids:  # both auto-assigned, and listed live under My chats
            await page.locator(f"#my-chats li[data-cid='{cid}']").wait_for(timeout=TIMEOUT_MS)

        # Transfer the first to the billing queue, with a note for whoever takes it.
        await open_mine(page, moved)
        await page.wait_for_selector("#chat-state[data-state='WITH_AGENT']")
        # The other customer writes meanwhile: an unread count on that chat, not in this one.
        await customers[1].say("Còn ai ở đó không ạ?")
        unread = page.locator(f"#my-chats li[data-cid='{released}'] .unread")
        await unread.wait_for(timeout=TIMEOUT_MS)
        assert await unread.text_content() == "1"
        assert await page.locator("#log li.customer", has_text="Còn ai").count() == 0
        await page.click("#transfer")
        await page.select_option("#transfer-queue", "billing")
        await page.fill("#transfer-note", "Khách hỏi hoá đơn VAT")
        await page.click("#transfer-ok")
        # (flash messages are not awaited: the short test SLA may put a breach warning there)
        conv = await wait_for(lambda: _in_state(console, moved, "WAITING_AGENT"), timeout=30)
        assert (conv.queue, conv.agent_id) == ("billing", None)
        history = await console.g.gw.db.escalations(moved)
        assert [(e.kind, e.note) for e in history][-1] == ("transferred", "Khách hỏi hoá đơn VAT")
        await page.locator(f"#my-chats li[data-cid='{moved}']").wait_for(state="detached")
        await page.wait_for_selector("#chat-view", state="hidden")  # billing is not my queue

        # Release the second back to the bot (asks for a second click first).
        await open_mine(page, released)
        await page.wait_for_selector("#chat-state[data-state='WITH_AGENT']")
        await page.locator("#log li.customer", has_text="Còn ai ở đó không").wait_for()
        assert await unread.count() == 0  # read now
        await page.click("#release")
        assert (await console.conversation(released)).state == "WITH_AGENT"
        assert (await page.text_content("#release")) == "Click again to release"
        await page.click("#release")
        conv = await wait_for(lambda: _in_state(console, released, "BOT"), timeout=30)
        assert conv.agent_id is None
        await page.locator(f"#my-chats li[data-cid='{released}']").wait_for(state="detached")
        await customers[1].expect(
            lambda f: f["type"] == "event" and f["event"].get("state") == "BOT", timeout=15
        )
        assert (await console_state(page))["chats"] == []
        assert not page.errors, page.errors  # type: ignore[attr-defined]
    finally:
        await console.presence(agent, "offline")
        for customer in customers:
            await customer.close()
        await agent_ctx.close()


async def _in_state(console: Console, cid: str, state: str) -> Any:
    conv = await console.conversation(cid)
    return conv if conv is not None and conv.state == state else None
