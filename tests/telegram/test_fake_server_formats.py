"""The fake Bot API speaks Telegram's wire formats, checked with a client nobody here wrote.

python-telegram-bot drives the fake as it would drive Telegram: what it sends (form bodies with
JSON-encoded objects) must be understood, and what the fake answers must parse into its types and
errors. Formats the bridge's own client does not use (multipart, chunked bodies, query strings)
are sent by hand.
"""

import asyncio
from datetime import timedelta

import pytest
import requests
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MessageEntity,
    ReplyParameters,
)
from telegram.error import BadRequest, Forbidden, RetryAfter
from urllib3 import encode_multipart_formdata

from telegram_bridge.fake_server import FakeTelegramServer

from .updates import ALICE

CHAT = 4242


@pytest.fixture
def fake():
    server = FakeTelegramServer().start()
    server.control.configure_flood(enabled=False)
    try:
        yield server
    finally:
        server.stop()


def run(fake, scenario):
    """Run ``scenario(bot)`` with a python-telegram-bot ``Bot`` pointed at the fake."""

    async def main():
        async with Bot(fake.token, base_url=f"{fake.base_url}/bot") as bot:
            return await scenario(bot)

    return asyncio.run(main())


def api_url(fake, method):
    return f"{fake.base_url}/bot{fake.token}/{method}"


def test_send_message_with_html_and_an_inline_keyboard(fake):
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="approve:1")]])

    message = run(
        fake,
        lambda bot: bot.send_message(
            CHAT, "<b>Claim</b> &amp; &lt;more&gt;", parse_mode="HTML", reply_markup=keyboard
        ),
    )

    assert message.text == "Claim & <more>"
    assert message.entities == (MessageEntity(MessageEntity.BOLD, 0, 5),)
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "approve:1"
    assert message.chat.id == CHAT


def test_edit_message_text(fake):
    async def scenario(bot):
        sent = await bot.send_message(CHAT, "waiting")
        return await bot.edit_message_text("<i>done</i>", CHAT, sent.message_id, parse_mode="HTML")

    edited = run(fake, scenario)

    assert edited.text == "done"
    assert edited.entities[0].type == MessageEntity.ITALIC
    assert edited.edit_date is not None


def test_get_updates_and_answer_a_callback_query(fake):
    async def scenario(bot):
        sent = await bot.send_message(
            CHAT,
            "Approve?",
            reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="y")]]),
        )
        fake.control.send_text(CHAT, ALICE, "/status")
        fake.control.press_button(CHAT, sent.message_id, ALICE, "y")
        updates = await bot.get_updates(timeout=0)
        answered = await bot.answer_callback_query(updates[1].callback_query.id, text="Done")
        return updates, answered

    updates, answered = run(fake, scenario)

    assert updates[0].message.text == "/status"
    assert updates[0].message.from_user.username == ALICE["username"]
    assert updates[1].callback_query.data == "y"
    assert answered is True


def test_a_reply_names_the_message_it_answers(fake):
    async def scenario(bot):
        question = await bot.send_message(CHAT, "question")
        return await bot.send_message(
            CHAT, "answer", reply_parameters=ReplyParameters(question.message_id)
        )

    reply = run(fake, scenario)

    assert reply.reply_to_message.text == "question"


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda bot: bot.send_message(CHAT, "<b>open", parse_mode="HTML"), BadRequest, "parse"),
        (
            lambda bot: bot.send_message(CHAT, "<blink>x</blink>", parse_mode="HTML"),
            BadRequest,
            "parse",
        ),
        (lambda bot: bot.send_message(CHAT, "1 < 2", parse_mode="HTML"), BadRequest, "parse"),
        (
            lambda bot: bot.send_message(CHAT, "x", reply_parameters=ReplyParameters(999)),
            BadRequest,
            "replied not found",
        ),
        (lambda bot: bot.send_message(CHAT, "x" * 4097), BadRequest, "too long"),
        (lambda bot: bot.edit_message_text("x", CHAT, 12345), BadRequest, "not found"),
        (lambda bot: bot.answer_callback_query("nope"), BadRequest, "query is too old"),
    ],
    ids=["unclosed", "unsupported", "bare-lt", "no-reply-target", "too-long", "no-edit", "query"],
)
def test_error_bodies_parse_into_the_clients_errors(fake, call, error, words):
    with pytest.raises(error) as raised:
        run(fake, call)

    assert words in raised.value.message.lower()


def test_the_limit_counts_the_parsed_text_not_the_markup(fake):
    text = "&lt;&amp;" * 2048  # 18,432 characters of markup, 4,096 shown

    message = run(fake, lambda bot: bot.send_message(CHAT, text, parse_mode="HTML"))

    assert message.text == "<&" * 2048


def test_flood_control_and_blocked_chats_are_the_clients_errors(fake, monkeypatch):
    # The client's coming type for retry_after, without its deprecation warning.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    fake.control.inject("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as raised:
        run(fake, lambda bot: bot.send_message(CHAT, "x"))
    assert raised.value.retry_after == timedelta(seconds=3)

    fake.control.block_chat(CHAT)
    with pytest.raises(Forbidden):
        run(fake, lambda bot: bot.send_message(CHAT, "x"))

    fake.control.unblock_chat(CHAT)
    assert run(fake, lambda bot: bot.send_message(CHAT, "back")).text == "back"


def test_multipart_chunked_and_query_string_requests_are_understood(fake):
    body, content_type = encode_multipart_formdata(
        {"chat_id": str(CHAT), "text": "<b>multipart</b>", "parse_mode": "HTML"}
    )
    multipart = requests.post(
        api_url(fake, "sendMessage"), data=body, headers={"Content-Type": content_type}, timeout=5
    ).json()
    chunked = requests.post(
        api_url(fake, "sendMessage"),
        data=iter([f'{{"chat_id": {CHAT}, '.encode(), b'"text": "chunked"}']),
        headers={"Content-Type": "application/json"},
        timeout=5,
    ).json()
    query = requests.get(
        api_url(fake, "sendMessage"), params={"chat_id": CHAT, "text": "query"}, timeout=5
    ).json()

    assert multipart["result"]["text"] == "multipart"
    assert multipart["result"]["entities"] == [{"type": "bold", "offset": 0, "length": 9}]
    assert chunked["result"]["text"] == "chunked"
    assert query["result"]["text"] == "query"


def test_webhook_answers_carry_a_description(fake):
    set_answer = requests.post(
        api_url(fake, "setWebhook"), json={"url": "https://example.com/hook"}, timeout=5
    ).json()
    deleted = requests.post(api_url(fake, "deleteWebhook"), timeout=5).json()
    again = requests.post(api_url(fake, "deleteWebhook"), timeout=5).json()

    assert set_answer == {"ok": True, "result": True, "description": "Webhook was set"}
    assert deleted["description"] == "Webhook was deleted"
    assert again["description"] == "Webhook is already deleted"


def test_statistics_count_bot_api_answers_only(fake):
    run(fake, lambda bot: bot.send_message(CHAT, "x"))
    fake.control.sent()
    fake.control.messages(CHAT)

    stats = fake.control.stats()

    # getMe (the client's initialisation) and sendMessage; the control calls are not answers.
    assert stats["responses"] == {"200": 2}
