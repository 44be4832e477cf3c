"""The Bot API client against the fake server: results, retries, error mapping, token secrecy."""

import logging
import socket

import pytest

from telegram_bridge.client import (
    AmbiguousTimeout,
    BotApiError,
    BotClient,
    PermanentError,
    RetryAfter,
    TransientError,
    get_client,
    is_idempotent,
)

MESSAGE = {"chat_id": 5, "text": "Approval requested"}


@pytest.fixture
def bot(fake_telegram, settings):
    """A client with short timeouts and backoffs, pointed at the fake."""
    settings.TELEGRAM_CONNECT_TIMEOUT = 2
    settings.TELEGRAM_READ_TIMEOUT = 0.5
    settings.TELEGRAM_RETRY_TOTAL = 3
    settings.TELEGRAM_RETRY_BACKOFF = 0.01
    settings.TELEGRAM_RETRY_BACKOFF_MAX = 0.05
    fake_telegram.control.configure_flood(enabled=False)
    bot = BotClient()
    yield bot
    bot.close()


def calls(fake_telegram, method):
    return fake_telegram.control.stats()["calls"].get(method, 0)


def test_an_ok_answer_returns_the_result(bot, fake_telegram):
    message = bot.call("sendMessage", MESSAGE)

    assert message["text"] == "Approval requested"
    assert fake_telegram.control.sent(chat_id=5)[0]["message_id"] == message["message_id"]


def test_429_raises_retry_after_at_once_for_the_chat(bot, fake_telegram):
    fake_telegram.control.inject("sendMessage", 429, retry_after=17)

    with pytest.raises(RetryAfter) as caught:
        bot.call("sendMessage", MESSAGE)

    assert caught.value.retry_after == 17
    assert caught.value.chat_scoped is True
    assert caught.value.chat_id == 5
    assert caught.value.permanent is False
    assert calls(fake_telegram, "sendMessage") == 1


def test_429_on_a_call_without_a_chat_is_global(bot, fake_telegram):
    fake_telegram.control.inject("getMe", 429, retry_after=2)

    with pytest.raises(RetryAfter) as caught:
        bot.call("getMe")

    assert caught.value.chat_scoped is False


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_burst_shorter_than_the_retry_budget_is_delivered(bot, fake_telegram, status):
    fake_telegram.control.inject("sendMessage", status, count=3)

    message = bot.call("sendMessage", MESSAGE)

    assert message["chat"]["id"] == 5
    assert calls(fake_telegram, "sendMessage") == 4
    assert len(fake_telegram.control.sent()) == 1


def test_a_5xx_burst_longer_than_the_retry_budget_raises_transient_error(bot, fake_telegram):
    fake_telegram.control.inject("sendMessage", 502, count=10)

    with pytest.raises(TransientError) as caught:
        bot.call("sendMessage", MESSAGE)

    assert caught.value.status_code == 502
    assert caught.value.permanent is False
    assert calls(fake_telegram, "sendMessage") == 4


@pytest.mark.parametrize(
    ("status", "description"),
    [(400, "Bad Request: chat not found"), (403, "Forbidden: bot was blocked by the user")],
)
def test_400_and_403_raise_permanent_error_without_retry(bot, fake_telegram, status, description):
    fake_telegram.control.inject("sendMessage", status, count=5)

    with pytest.raises(PermanentError) as caught:
        bot.call("sendMessage", MESSAGE)

    assert caught.value.permanent is True
    assert caught.value.error_code == status
    assert caught.value.description == description
    assert calls(fake_telegram, "sendMessage") == 1


def test_a_wrong_token_is_a_permanent_error(fake_telegram, settings):
    settings.TELEGRAM_BOT_TOKEN = "111111:wrong-token-for-this-test"

    with pytest.raises(PermanentError) as caught:
        BotClient().call("getMe")

    assert caught.value.status_code == 401


def test_a_missing_token_is_a_permanent_error_without_a_call(fake_telegram, settings):
    settings.TELEGRAM_BOT_TOKEN = ""

    with pytest.raises(PermanentError, match="TELEGRAM_BOT_TOKEN is not set"):
        BotClient().call("getMe")

    assert calls(fake_telegram, "getMe") == 0


def test_a_conflict_is_neither_permanent_nor_transient(bot, fake_telegram):
    bot.call("setWebhook", {"url": "http://127.0.0.1:9/hook"})

    with pytest.raises(BotApiError) as caught:
        bot.call("getUpdates")

    assert caught.value.status_code == 409
    assert not isinstance(caught.value, PermanentError | TransientError)


def test_a_reset_on_an_idempotent_method_is_retried(bot, fake_telegram):
    fake_telegram.control.inject_reset("getMe")

    assert bot.call("getMe")["is_bot"] is True
    assert calls(fake_telegram, "getMe") == 2


def test_a_reset_on_send_message_is_not_retried_and_raises_transient_error(bot, fake_telegram):
    fake_telegram.control.inject_reset("sendMessage")

    with pytest.raises(TransientError):
        bot.call("sendMessage", MESSAGE)

    assert calls(fake_telegram, "sendMessage") == 1


def test_a_hang_past_the_read_timeout_on_send_message_is_ambiguous_after_one_call(
    bot, fake_telegram
):
    fake_telegram.control.inject_hang("sendMessage", 30)

    with pytest.raises(AmbiguousTimeout) as caught:
        bot.call("sendMessage", MESSAGE)

    assert isinstance(caught.value, TransientError)
    assert calls(fake_telegram, "sendMessage") == 1


def test_a_hang_on_an_idempotent_method_is_retried(bot, fake_telegram):
    fake_telegram.control.inject_hang("editMessageText", 30)
    message = bot.call("sendMessage", MESSAGE)

    edited = bot.call(
        "editMessageText",
        {"chat_id": 5, "message_id": message["message_id"], "text": "Approved"},
    )

    assert edited["text"] == "Approved"
    assert calls(fake_telegram, "editMessageText") == 2


def test_a_per_call_timeout_lets_a_long_poll_wait_longer_than_the_read_timeout(bot, fake_telegram):
    fake_telegram.control.inject_hang("getUpdates", 1)

    assert bot.call("getUpdates", {"timeout": 0}, timeout=10) == []


def test_a_refused_connection_is_transient(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.TELEGRAM_RETRY_BACKOFF = 0.01
    settings.TELEGRAM_BOT_TOKEN = "222222:token-of-a-server-that-is-not-there"

    with pytest.raises(TransientError, match="connection failed"):
        BotClient(base_url=f"http://127.0.0.1:{port}").call("getMe")


def test_the_token_appears_in_no_error_and_no_log_record(bot, fake_telegram, settings, caplog):
    token = fake_telegram.token
    caplog.set_level(logging.DEBUG)
    fake_telegram.control.inject("sendMessage", 503, count=10)
    fake_telegram.control.inject_reset("getMe", count=10)
    fake_telegram.control.inject_hang("sendChatAction", 30, count=10)
    fake_telegram.control.inject("editMessageText", 400)
    failures = [
        ("sendMessage", MESSAGE),
        ("getMe", None),
        ("sendChatAction", {"chat_id": 5, "action": "typing"}),
        ("editMessageText", {"chat_id": 5, "message_id": 1, "text": "x"}),
    ]
    errors = []
    for method, payload in failures:
        with pytest.raises(BotApiError) as caught:
            bot.call(method, payload)
        errors.append(caught.value)

    assert len(errors) == len(failures)
    for error in errors:
        assert token not in str(error)
        assert token not in repr(error)
        assert token not in error.description
        assert error.__cause__ is None
        assert error.__context__ is None
    assert caplog.records
    assert token not in caplog.text
    assert token.split(":")[1] not in caplog.text


def test_get_client_is_rebuilt_when_the_settings_change(fake_telegram, settings):
    first = get_client()
    assert get_client() is first

    settings.TELEGRAM_READ_TIMEOUT = 1.5

    assert get_client() is not first
    assert get_client().read_timeout == 1.5


@pytest.mark.parametrize(
    ("method", "idempotent"),
    [
        ("sendMessage", False),
        ("sendPhoto", False),
        ("forwardMessage", False),
        ("copyMessage", False),
        ("sendChatAction", True),
        ("editMessageText", True),
        ("getUpdates", True),
        ("answerCallbackQuery", True),
    ],
)
def test_which_methods_may_be_repeated(method, idempotent):
    assert is_idempotent(method) is idempotent


def test_log_records_of_the_http_libraries_are_redacted(fake_telegram):
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        '%s "%s %s"',
        ("http://127.0.0.1:1", "POST", f"/bot{fake_telegram.token}/getMe"),
        None,
    )

    assert logging.getLogger("urllib3.connectionpool").filter(record)

    assert fake_telegram.token not in record.getMessage()
    assert "/bot[redacted]/getMe" in record.getMessage()
