"""Every reply fits Telegram's limit, counted as Telegram counts it, and echoes little."""

import pytest
from django.db import transaction

from telegram_bridge import fitting, inbound, outbox
from telegram_bridge.models import OutboundMessage

from .updates import text_update

LIMIT = 4096


def test_html_is_counted_after_parsing():
    assert fitting.visible_length("<b>a&amp;b</b> &lt;c&gt;", html=True) == 7
    assert fitting.visible_length("<b>a</b>", html=False) == 8


def test_characters_outside_the_bmp_count_twice():
    assert fitting.visible_length("a😀", html=False) == 3


def test_markup_full_of_entities_that_fits_is_left_alone():
    text = "&lt;&amp;" * (LIMIT // 2)

    assert fitting.fit(text, LIMIT, html=True) == text


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("x" * 10_000, False),
        ("<b>" + "&amp;" * 5000 + "</b>", True),
        ("<i>" + "😀" * 3000 + "</i> tail", True),
        ("<a href='https://example.com/'>" + "y" * 9000 + "</a>", True),
    ],
    ids=["plain", "entities", "surrogate-pairs", "link"],
)
def test_a_long_text_is_cut_to_the_limit_with_its_tags_closed(text, html):
    cut = fitting.fit(text, LIMIT, html=html)

    assert LIMIT - 2 <= fitting.visible_length(cut, html=html) <= LIMIT
    assert fitting.ELLIPSIS in cut
    if html:
        opened = text[1 : text.index(">")].split()[0]
        assert cut.endswith(f"…</{opened}>")


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "limit"), [("sendMessage", 4096), ("answerCallbackQuery", 200)])
def test_the_outbox_queues_only_texts_that_fit(method, limit):
    with transaction.atomic():
        message = outbox.enqueue(
            method=method,
            chat_id=5,
            payload={"text": "&lt;" * 10_000, "parse_mode": "HTML"},
            dedupe_key=f"long:{method}",
        )

    assert fitting.visible_length(message.payload["text"], html=True) <= limit


def reply_to(text):
    stored = inbound.store(text_update(text), dispatch=False)
    inbound.process(stored.update.pk)
    return OutboundMessage.objects.get(dedupe_key__endswith=":reply").payload["text"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "typed", ["/" + "x" * 4095, "/approve " + "a" * 4000, "/deny " + "<&>" * 1300]
)
def test_a_reply_repeats_only_a_short_prefix_of_what_was_typed(typed, approver_account):
    reply = reply_to(typed)

    assert len(reply) < 400
    assert fitting.visible_length(reply, html=True) < 200
