"""The repository API on both dialects: behaviour, idempotency under races, and round-trips."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError, StatementError

from bot.core.store import Conversation, ConversationState, Database, Message, utcnow


async def _count(db: Database, sql: str, **params: object) -> int:
    async with db.sql_engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def _conversation(db: Database, external_id: str = "visitor-1") -> Conversation:
    customer = await db.get_or_create_customer("widget", external_id)
    return await db.create_conversation(customer.id, "widget", "vi")


# -- customers -------------------------------------------------------------------------------


async def test_get_or_create_customer_creates_once_and_returns_the_same_row(db: Database) -> None:
    first = await db.get_or_create_customer("telegram", "42", language="vi", display_name="Lan")
    again = await db.get_or_create_customer("telegram", "42", language="en")
    assert again.id == first.id
    assert (again.language, again.display_name, again.unreachable) == ("vi", "Lan", False)
    assert first.created_at.tzinfo is not None
    other = await db.get_or_create_customer("widget", "42")  # same id, other channel
    assert other.id != first.id
    assert await db.get_customer(first.id) == first
    assert await db.get_customer("missing") is None


async def test_get_or_create_customer_is_race_safe(db: Database) -> None:
    found = await asyncio.gather(
        *(db.customer_for("widget", "racer", language="en") for _ in range(50))
    )
    assert len({c.id for c, _ in found}) == 1
    assert [created for _, created in found].count(True) == 1  # one of them made it
    assert (await db.customer_for("widget", "racer"))[1] is False
    count = "SELECT count(*) FROM customer WHERE external_id = :e"
    assert await _count(db, count, e="racer") == 1


async def test_a_customer_thought_new_is_still_made_once(db: Database) -> None:
    """`likely_new` skips the look-up, not the check: a known identity gets its own row back,
    and first contacts racing (some thought new, some not) make one row."""
    known, _ = await db.customer_for("widget", "known")
    assert await db.customer_for("widget", "known", likely_new=True) == (known, False)
    found = await asyncio.gather(
        *(db.customer_for("widget", "new-racer", likely_new=i % 2 == 0) for i in range(20))
    )
    assert len({c.id for c, _ in found}) == 1
    assert [created for _, created in found].count(True) == 1
    conversations = await asyncio.gather(
        *(db.create_conversation(c.id, "widget", "vi") for c, _ in found[:5])
    )
    assert len({c.id for c in conversations}) == 5
    assert {c.id for c in await db.list_conversations(customer_id=found[0][0].id)} == {
        c.id for c in conversations
    }


async def test_update_customer(db: Database) -> None:
    customer = await db.get_or_create_customer("telegram", "7")
    seen = utcnow() + timedelta(minutes=5)
    await db.update_customer(customer.id, unreachable=True, language="en", last_seen_at=seen)
    updated = await db.get_customer(customer.id)
    assert updated is not None
    assert (updated.unreachable, updated.language, updated.last_seen_at) == (True, "en", seen)
    with pytest.raises(KeyError):
        await db.update_customer("missing", language="vi")
    with pytest.raises(TypeError, match="no_such_column"):
        await db.update_customer(customer.id, no_such_column=1)


# -- conversations ---------------------------------------------------------------------------


async def test_conversation_create_get_update_and_latest(db: Database) -> None:
    customer = await db.get_or_create_customer("widget", "v")
    assert await db.latest_conversation(customer.id) is None
    first = await db.create_conversation(customer.id, "widget", "vi")
    assert (first.state, first.bot_only, first.reopen_count) == ("BOT", True, 0)
    assert await db.get_conversation(first.id) == first
    second = await db.create_conversation(customer.id, "widget", "en")
    latest = await db.latest_conversation(customer.id)
    assert latest is not None and latest.id == second.id

    escalated_at = utcnow()
    updated = await db.update_conversation(
        first.id,
        state=ConversationState.WAITING_AGENT,
        escalated_at=escalated_at,
        bot_only=False,
        queue="safety",
        reopen_count=Conversation.reopen_count + 1,
    )
    assert updated.state == "WAITING_AGENT" and updated.queue == "safety"
    assert (updated.bot_only, updated.reopen_count, updated.escalated_at) == (
        False,
        1,
        escalated_at,
    )
    assert updated.updated_at > first.updated_at
    assert await db.get_conversation(first.id) == updated
    assert await db.get_conversation("missing") is None
    with pytest.raises(KeyError):
        await db.update_conversation("missing", state="CLOSED")


async def test_list_conversations_filters_newest_first(db: Database) -> None:
    a = await db.get_or_create_customer("widget", "a")
    b = await db.get_or_create_customer("telegram", "b")
    a1 = await db.create_conversation(a.id, "widget", "vi")
    b1 = await db.create_conversation(b.id, "telegram", "en")
    a2 = await db.create_conversation(a.id, "widget", "vi")
    await db.update_conversation(a1.id, state="CLOSED")

    assert [c.id for c in await db.list_conversations()] == [a2.id, b1.id, a1.id]
    assert [c.id for c in await db.list_conversations(customer_id=a.id)] == [a2.id, a1.id]
    assert [c.id for c in await db.list_conversations(states=["BOT"])] == [a2.id, b1.id]
    mine_open = await db.list_conversations(customer_id=a.id, states=["BOT", "WITH_AGENT"])
    assert [c.id for c in mine_open] == [a2.id]
    assert [c.id for c in await db.list_conversations(limit=1)] == [a2.id]
    assert await db.list_conversations(states=[]) == []


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        await db.create_conversation("no-such-customer", "widget", "vi")


# -- messages --------------------------------------------------------------------------------


async def test_add_message_is_idempotent_per_client_msg_id(db: Database) -> None:
    conv = await _conversation(db)
    msg, created = await db.add_message(conv.id, "customer", "xin chào", client_msg_id="c1")
    assert created and msg.id is not None
    again, created_again = await db.add_message(conv.id, "customer", "resent", client_msg_id="c1")
    assert (again.id, again.text, created_again) == (msg.id, "xin chào", False)

    other = await _conversation(db, "visitor-2")  # the same client id in another conversation
    _, created_elsewhere = await db.add_message(other.id, "customer", "hi", client_msg_id="c1")
    assert created_elsewhere
    # Without a client_msg_id nothing is deduplicated (NULLs never conflict).
    b1, new1 = await db.add_message(conv.id, "bot", "answer")
    b2, new2 = await db.add_message(conv.id, "bot", "answer")
    assert new1 and new2 and b1.id != b2.id
    assert len(await db.transcript(conv.id)) == 3


async def test_add_message_concurrent_duplicates_store_one_row(db: Database) -> None:
    conv = await _conversation(db)
    results = await asyncio.gather(
        *(db.add_message(conv.id, "customer", "hỏng rồi", client_msg_id="dup") for _ in range(20))
    )
    assert len({m.id for m, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    count = "SELECT count(*) FROM message WHERE client_msg_id = 'dup'"
    assert await _count(db, count) == 1


async def test_concurrent_messages_each_get_their_own_row(db: Database) -> None:
    """Concurrent turns' messages may share one statement (group commit on PostgreSQL): each
    caller still gets its own row, and a repeat of a key in the same moment is no new row."""
    conv, other = await _conversation(db), await _conversation(db, "visitor-2")
    calls = [(conv.id, f"k{i}", f"m{i}") for i in range(30)] + [
        (other.id, "k0", "other's first"),  # the same key in another conversation
        (conv.id, "k3", "k3 again"),  # a resend racing the first
    ]
    results = await asyncio.gather(
        *(
            db.add_message(cid, "bot", said, client_msg_id=key, payload={"i": said}, processed=True)
            for cid, key, said in calls
        )
    )
    rows: dict[tuple[str, str], set[int]] = {}
    for (cid, key, said), (msg, created) in zip(calls, results, strict=True):
        assert (msg.conversation_id, msg.client_msg_id) == (cid, key)
        rows.setdefault((cid, key), set()).add(msg.stored_id)
        if created:
            assert (msg.text, msg.payload) == (said, {"i": said})
            assert msg.processed_at is not None and msg.created_at.tzinfo is not None
    assert all(len(ids) == 1 for ids in rows.values())  # the racing resend got the same row
    assert sum(created for _, created in results) == len(rows) == 31
    stored = sorted(m.client_msg_id or "" for m in await db.transcript(conv.id))
    assert stored == sorted(f"k{i}" for i in range(30))


async def test_a_bad_message_among_concurrent_ones_fails_alone(db: Database) -> None:
    """Messages written together commit together, so one the database refuses (here: a
    conversation that does not exist) must not take the others down with it."""
    conv = await _conversation(db)
    results = await asyncio.gather(
        db.add_message(conv.id, "customer", "first", client_msg_id="a"),
        db.add_message("no-such-conversation", "customer", "lost", client_msg_id="b"),
        db.add_message(conv.id, "customer", "third", client_msg_id="c"),
        return_exceptions=True,
    )
    assert isinstance(results[1], IntegrityError)
    assert [r[0].text for r in (results[0], results[2]) if isinstance(r, tuple)] == [
        "first",
        "third",
    ]
    assert [m.text for m in await db.transcript(conv.id)] == ["first", "third"]


async def test_concurrent_messages_into_open_conversations(db: Database) -> None:
    conv, closed = await _conversation(db), await _conversation(db, "visitor-2")
    await db.update_conversation(closed.id, state="CLOSED", closed_at=utcnow())
    results = await asyncio.gather(
        db.add_to_open_conversation(conv.id, "một", client_msg_id="m-1"),
        db.add_to_open_conversation(closed.id, "đóng rồi", client_msg_id="m-2"),
        db.add_to_open_conversation(conv.id, "hai", client_msg_id="m-3", payload={"q": 1}),
        db.add_to_open_conversation(conv.id, "một (resent)", client_msg_id="m-1"),
    )
    first, into_closed, second, resent = results
    assert first is not None and (first.text, first.sender) == ("một", "customer")
    assert second is not None and (second.text, second.payload) == ("hai", {"q": 1})
    assert into_closed is None and resent is None
    assert [m.text for m in await db.transcript(conv.id)] == ["một", "hai"]
    assert await db.transcript(closed.id) == []


async def test_add_message_stores_all_fields(db: Database) -> None:
    conv = await _conversation(db)
    payload = {"quick_replies": ["Có", "Không"], "attachments": [{"url": "https://x/y.jpg"}]}
    msg, _ = await db.add_message(
        conv.id,
        "bot",
        "Bạn cần gì?",
        sender_id="engine",
        payload=payload,
        intent="greet",
        confidence=0.93,
        processed=True,
    )
    (stored,) = await db.transcript(conv.id)
    assert stored.payload == payload
    assert (stored.sender, stored.sender_id, stored.intent) == ("bot", "engine", "greet")
    assert stored.confidence == pytest.approx(0.93)
    assert stored.processed_at is not None and stored.created_at.tzinfo is not None
    assert stored.client_msg_id is None and msg.id == stored.id
    with pytest.raises(ValueError, match="sender"):
        await db.add_message(conv.id, "robot", "typo'd sender")


async def test_transcript_order_limit_and_notes(db: Database) -> None:
    conv = await _conversation(db)
    senders = ["customer", "bot", "customer", "note", "agent", "customer"]
    for i, sender in enumerate(senders):
        await db.add_message(conv.id, sender, f"m{i}")
    full = await db.transcript(conv.id)
    assert [m.text for m in full] == [f"m{i}" for i in range(6)]
    assert [m.text for m in await db.transcript(conv.id, limit=2)] == ["m4", "m5"]
    public = await db.transcript(conv.id, include_notes=False)
    assert [m.text for m in public] == ["m0", "m1", "m2", "m4", "m5"]
    assert [m.text for m in await db.transcript(conv.id, limit=3, include_notes=False)] == [
        "m2",
        "m4",
        "m5",
    ]
    assert await db.transcript("missing") == []


async def test_pending_work_reads_the_conversation_its_unanswered_messages_and_their_context(
    db: Database,
) -> None:
    conv, other = await _conversation(db), await _conversation(db, "visitor-2")
    await db.add_message(other.id, "customer", "someone else")
    assert await db.pending_work("no-such-conversation", context=3, limit=10) is None
    nothing = await db.pending_work(conv.id, context=3, limit=10)
    assert nothing is not None and nothing.conversation.id == conv.id
    assert nothing.messages == [] and not nothing.more

    rows = [("customer", "c0", True), ("bot", "b1", True), ("customer", "", True),
            ("customer", "c3", True), ("agent", "a4", True), ("customer", "c5", True),
            ("customer", "c6", False), ("customer", "", False), ("customer", "c8", True),
            ("customer", "c9", False)]  # fmt: skip
    ids = [
        (await db.add_message(conv.id, sender, text_, processed=done))[0].stored_id
        for sender, text_, done in rows
    ]
    await db.update_conversation(conv.id, severity="high")

    work = await db.pending_work(conv.id, context=2, limit=10)
    assert work is not None and work.conversation.severity == "high" and not work.more
    got = [(m.id, m.text, before) for m, before in work.messages]
    assert got == [
        (ids[6], "c6", ("c3", "c5")),  # empty texts and other senders are no context
        (ids[7], "", ("c5", "c6")),  # an earlier unanswered message is context too
        (ids[9], "c9", ("c6", "c8")),  # so is one answered in between (a channel command)
    ]
    wide = await db.pending_work(conv.id, context=4, limit=10)
    assert wide is not None and wide.messages[0][1] == ("c0", "c3", "c5")  # all there are
    none = await db.pending_work(conv.id, context=0, limit=10)
    assert none is not None and [before for _, before in none.messages] == [(), (), ()]

    first = await db.pending_work(conv.id, context=2, limit=2)
    assert first is not None and first.more
    assert [m.id for m, _ in first.messages] == [ids[6], ids[7]]
    for m, _ in first.messages:
        await db.mark_processed(m.stored_id)
    rest = await db.pending_work(conv.id, context=2, limit=2)
    assert rest is not None  # (`more` may say yes: its rows were cut by the read's limit)
    assert [(m.id, before) for m, before in rest.messages] == [(ids[9], ("c6", "c8"))]
    await db.mark_processed(ids[9])
    done = await db.pending_work(conv.id, context=2, limit=2)
    assert done is not None and done.messages == [] and not done.more


async def test_a_message_goes_into_a_conversation_only_while_it_is_open(db: Database) -> None:
    conv = await _conversation(db)
    quick = {"quick_reply": "intent:warranty_policy"}
    msg = await db.add_to_open_conversation(conv.id, "bảo hành", client_msg_id="m-1", payload=quick)
    assert msg is not None and msg.conversation_id == conv.id and msg.sender == "customer"
    assert msg.payload == quick and msg.processed_at is None and msg.created_at.tzinfo
    # A retry is no new row: None, and the general way finds the one stored.
    assert await db.add_to_open_conversation(conv.id, "bảo hành", client_msg_id="m-1") is None
    again, created = await db.add_message(conv.id, "customer", "bảo hành", client_msg_id="m-1")
    assert (again.id, created) == (msg.id, False)
    assert (
        await db.add_to_open_conversation("no-such-conversation", "x", client_msg_id="m-2") is None
    )

    await db.update_conversation(conv.id, state="CLOSED", closed_at=utcnow())
    assert await db.add_to_open_conversation(conv.id, "còn đó không", client_msg_id="m-3") is None
    assert [m.client_msg_id for m in await db.transcript(conv.id)] == ["m-1"]


async def test_unicode_round_trip(db: Database) -> None:
    conv = await _conversation(db)
    texts = [
        "Máy giặt của tôi bị chập điện, khói bốc ra! Cần hỗ trợ gấp 🔥🧯",
        "Tiếng Việt có dấu: ă â đ ê ô ơ ư — ảãạ ẳẵặ ẩẫậ; không dấu: may bi no",
        "emoji: 👍🏽 👨‍👩‍👧‍👦 🇻🇳 and CJK 中文 and RTL שלום",
        ("Dài quá 😅 " * 200)[:2000],
    ]
    assert len(texts[-1]) == 2000
    for i, t in enumerate(texts):
        await db.add_message(conv.id, "customer", t, client_msg_id=f"ü-{i}-🙂")
    stored = await db.transcript(conv.id)
    assert [m.text for m in stored] == texts
    assert [m.client_msg_id for m in stored] == [f"ü-{i}-🙂" for i in range(4)]
    customer = await db.get_or_create_customer("telegram", "99", display_name="Nguyễn Thị Ánh 🌸")
    assert (await db.get_customer(customer.id)).display_name == "Nguyễn Thị Ánh 🌸"  # type: ignore[union-attr]


async def test_unprocessed_customer_messages_and_mark_processed(db: Database) -> None:
    conv = await _conversation(db)
    m1, _ = await db.add_message(conv.id, "customer", "first")
    await db.add_message(conv.id, "bot", "bot messages never count")
    m2, _ = await db.add_message(conv.id, "customer", "second")
    await db.add_message(conv.id, "customer", "handled inline", processed=True)

    pending = await db.unprocessed_customer_messages()
    assert [m.id for m in pending] == [m1.id, m2.id]
    assert [m.id for m in await db.unprocessed_customer_messages(limit=1)] == [m1.id]
    assert await db.unprocessed_customer_messages(older_than_s=3600) == []

    await db.mark_processed(m1.id)  # type: ignore[arg-type]
    await db.mark_processed(m1.id)  # type: ignore[arg-type]  # repeating is harmless
    assert [m.id for m in await db.unprocessed_customer_messages()] == [m2.id]
    (first,) = [m for m in await db.transcript(conv.id) if m.id == m1.id]
    assert first.processed_at is not None and first.processed_at <= utcnow()


async def test_concurrent_marks_share_statements_and_each_returns_committed(db: Database) -> None:
    conv = await _conversation(db)
    msgs = [(await db.add_message(conv.id, "customer", f"m{i}"))[0] for i in range(40)]
    ids = [m.stored_id for m in msgs]
    # Each caller returns once its own mark is committed, batched or not (and repeated).
    await asyncio.gather(*(db.mark_processed(i) for i in ids + ids[:5]))
    assert await db.unprocessed_customer_messages(conversation_id=conv.id) == []
    other = Database(db.url, schema=db.schema)  # another connection sees them committed
    try:
        marked = await other.transcript(conv.id)
        assert all(m.processed_at is not None for m in marked) and len(marked) == 40
    finally:
        await other.close()


async def test_old_unprocessed_messages_are_found_by_age(db: Database) -> None:
    conv = await _conversation(db)
    msg, _ = await db.add_message(conv.id, "customer", "stuck")
    old = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=7)))  # any zone in
    async with db.sql_engine.begin() as conn:
        await conn.execute(update(Message).where(Message.id == msg.id).values(created_at=old))
    found = await db.unprocessed_customer_messages(older_than_s=60)
    assert [m.id for m in found] == [msg.id]
    assert found[0].created_at == old  # the same instant, returned in UTC
    assert found[0].created_at.tzinfo == timezone.utc


async def test_naive_timestamps_are_rejected(db: Database) -> None:
    conv = await _conversation(db)
    with pytest.raises(StatementError, match="naive datetime"):
        await db.update_conversation(conv.id, closed_at=datetime(2025, 1, 1))


# -- escalations -----------------------------------------------------------------------------


async def test_escalations_history(db: Database) -> None:
    conv = await _conversation(db)
    other = await _conversation(db, "visitor-2")
    e1 = await db.add_escalation(
        conv.id, "escalated", reason="Khách báo máy bốc khói", severity="critical", queue="safety"
    )
    await db.add_escalation(other.id, "escalated")
    await db.add_escalation(conv.id, "claimed", actor="agent-7")
    await db.add_escalation(conv.id, "resolved", actor="agent-7", note="đã gọi lại 📞")
    history = await db.escalations(conv.id)
    assert [e.kind for e in history] == ["escalated", "claimed", "resolved"]
    assert history[0].id == e1.id and history[0].actor == "bot"
    assert (history[0].reason, history[0].severity, history[0].queue) == (
        "Khách báo máy bốc khói",
        "critical",
        "safety",
    )
    assert history[2].note == "đã gọi lại 📞" and history[2].created_at.tzinfo is not None
    assert await db.escalations("missing") == []
    with pytest.raises(ValueError, match="kind"):
        await db.add_escalation(conv.id, "escalate")


# -- health ----------------------------------------------------------------------------------


async def test_ping(db: Database) -> None:
    assert await db.ping() is True
