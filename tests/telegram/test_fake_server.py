"""The fake Bot API speaks Telegram's wire format and acts like Telegram where the bridge cares."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from telegram_bridge.fake_server import ControlError, FakeTelegramServer, FloodLimits
from telegram_bridge.fake_server.webhook import SECRET_HEADER

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEYBOARD = {"inline_keyboard": [[{"text": "Approve", "callback_data": "approve:abc"}]]}


@pytest.fixture
def api(fake_telegram):
    """POST to a Bot API method of the fake without the bridge's client in between."""
    session = requests.Session()
    session.trust_env = False

    def call(method, token=None, **kwargs):
        url = f"{fake_telegram.base_url}/bot{token or fake_telegram.token}/{method}"
        return session.post(url, timeout=10, **kwargs)

    yield call
    session.close()


def wait_for(condition, timeout=10.0, interval=0.02):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class Receiver:
    """A webhook endpoint that answers the statuses it is given, then 200, and records requests."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/telegram/webhook/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    receivers = []

    def make(statuses=()):
        receivers.append(Receiver(statuses))
        return receivers[-1]

    yield make
    for item in receivers:
        item.close()


# --- Wire format -------------------------------------------------------------------------------


def test_get_me_answers_the_bot_user(api):
    body = api("getMe").json()

    assert body["ok"] is True
    assert body["result"]["is_bot"] is True


def test_send_message_takes_a_json_body(api, fake_telegram):
    body = api("sendMessage", json={"chat_id": 42, "text": "hello", "reply_markup": KEYBOARD})

    assert body.status_code == 200
    message = body.json()["result"]
    assert message["chat"]["id"] == 42
    assert message["reply_markup"] == KEYBOARD
    sent = fake_telegram.control.sent(chat_id=42)
    assert [(item["method"], item["message_id"]) for item in sent] == [
        ("sendMessage", message["message_id"])
    ]


def test_send_message_takes_a_form_body_with_markup_as_json_text(api):
    body = api(
        "sendMessage", data={"chat_id": "42", "text": "hello", "reply_markup": json.dumps(KEYBOARD)}
    ).json()

    assert body["ok"] is True
    assert body["result"]["reply_markup"] == KEYBOARD


def test_parameters_may_come_in_the_query_string(api, fake_telegram):
    url = f"{fake_telegram.base_url}/bot{fake_telegram.token}/sendMessage"

    body = requests.get(url, params={"chat_id": 7, "text": "hi"}, timeout=10).json()

    assert body["result"]["text"] == "hi"


def test_method_names_ignore_case(api):
    assert api("GETME").json()["ok"] is True


def test_wrong_token_is_unauthorized(api):
    response = api("getMe", token="123456:wrong")

    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


def test_unknown_method_is_not_found(api):
    response = api("sendTelepathy", json={})

    assert response.status_code == 404
    assert response.json()["description"] == "Not Found"


@pytest.mark.parametrize(
    ("payload", "description"),
    [
        ({"chat_id": 1, "text": "  "}, "Bad Request: message text is empty"),
        ({"text": "hi"}, "Bad Request: chat_id is empty"),
        ({"chat_id": 1, "text": "x" * 4097}, "Bad Request: message is too long"),
        (
            {
                "chat_id": 1,
                "text": "hi",
                "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "x" * 65}]]},
            },
            "Bad Request: BUTTON_DATA_INVALID",
        ),
    ],
)
def test_bad_send_message_is_answered_400_like_telegram(api, payload, description):
    response = api("sendMessage", json=payload)

    assert response.status_code == 400
    assert response.json()["description"] == description


def test_unknown_chat_is_not_found_when_chats_are_configured():
    with FakeTelegramServer(chats=[1]) as server:
        url = f"{server.base_url}/bot{server.token}/sendMessage"
        response = requests.post(url, json={"chat_id": 2, "text": "hi"}, timeout=10)

    assert response.status_code == 400
    assert response.json()["description"] == "Bad Request: chat not found"


def test_a_blocked_chat_answers_403(api, fake_telegram):
    fake_telegram.control.block_chat(9)

    response = api("sendMessage", json={"chat_id": 9, "text": "hi"})

    assert response.status_code == 403
    assert response.json()["description"] == "Forbidden: bot was blocked by the user"


def test_editing_a_message_changes_it_and_an_identical_edit_is_refused(api, fake_telegram):
    sent = api("sendMessage", json={"chat_id": 5, "text": "pending", "reply_markup": KEYBOARD})
    message_id = sent.json()["result"]["message_id"]

    edited = api("editMessageText", json={"chat_id": 5, "message_id": message_id, "text": "done"})
    again = api("editMessageText", json={"chat_id": 5, "message_id": message_id, "text": "done"})
    missing = api("editMessageText", json={"chat_id": 5, "message_id": 999, "text": "done"})

    assert edited.json()["result"]["text"] == "done"
    [message] = fake_telegram.control.messages(5)
    assert message["text"] == "done"
    assert "reply_markup" not in message
    assert again.status_code == 400
    assert again.json()["description"].startswith("Bad Request: message is not modified")
    assert missing.json()["description"] == "Bad Request: message to edit not found"


def test_removing_the_keyboard_of_a_message(api, fake_telegram):
    sent = api("sendMessage", json={"chat_id": 5, "text": "pending", "reply_markup": KEYBOARD})
    message_id = sent.json()["result"]["message_id"]

    response = api("editMessageReplyMarkup", json={"chat_id": 5, "message_id": message_id})

    assert response.json()["ok"] is True
    assert "reply_markup" not in fake_telegram.control.messages(5)[0]


def test_a_callback_query_is_answered_once(api, fake_telegram):
    sent = api("sendMessage", json={"chat_id": 5, "text": "pending", "reply_markup": KEYBOARD})
    message_id = sent.json()["result"]["message_id"]
    update = fake_telegram.control.press_button(5, message_id, {"id": 77}, "approve:abc")
    query = update["callback_query"]

    first = api("answerCallbackQuery", json={"callback_query_id": query["id"], "text": "Done"})
    second = api("answerCallbackQuery", json={"callback_query_id": query["id"]})

    assert query["data"] == "approve:abc"
    assert query["from"]["id"] == 77
    assert query["message"]["message_id"] == message_id
    assert first.json()["result"] is True
    assert second.status_code == 400
    assert "query is too old" in second.json()["description"]
    assert len(fake_telegram.control.sent(method="answerCallbackQuery")) == 1


def test_send_chat_action_checks_the_action(api):
    assert api("sendChatAction", json={"chat_id": 5, "action": "typing"}).json()["ok"] is True
    assert api("sendChatAction", json={"chat_id": 5, "action": "dancing"}).status_code == 400


# --- getUpdates ----------------------------------------------------------------------------


def test_get_updates_returns_pending_updates_until_confirmed_by_offset(api, fake_telegram):
    first = fake_telegram.control.send_text(5, {"id": 5, "username": "bob"}, "/status")
    second = fake_telegram.control.send_text(5, 5, "hello")

    updates = api("getUpdates", json={}).json()["result"]
    again = api("getUpdates", json={}).json()["result"]
    after = api("getUpdates", json={"offset": first["update_id"] + 1}).json()["result"]
    confirmed = api("getUpdates", json={"offset": second["update_id"] + 1}).json()["result"]

    assert [u["update_id"] for u in updates] == [first["update_id"], second["update_id"]]
    assert updates[0]["message"]["entities"][0]["type"] == "bot_command"
    assert updates[0]["message"]["from"]["username"] == "bob"
    assert again == updates
    assert [u["update_id"] for u in after] == [second["update_id"]]
    assert confirmed == []


def test_a_restarted_server_does_not_repeat_update_or_callback_ids():
    """A database outlives the fake; ids it already stored must not come back after a restart."""
    seen = []
    for _ in range(2):
        with FakeTelegramServer() as server:
            text = server.control.send_text(5, 5, "/status")
            press = server.control.press_button(5, 1, 5, "approve:abc")
            seen.append((text["update_id"], press["callback_query"]["id"]))

    (first_update, first_query), (second_update, second_query) = seen
    assert first_update != second_update
    assert first_query != second_query


def test_a_long_poll_returns_as_soon_as_an_update_arrives(api, fake_telegram):
    results = []
    poll = threading.Thread(
        target=lambda: results.append(api("getUpdates", json={"timeout": 30}).json())
    )
    poll.start()
    wait_for(lambda: fake_telegram.control.stats()["calls"].get("getUpdates"))

    update = fake_telegram.control.send_text(5, 5, "ping")
    poll.join(timeout=15)

    assert not poll.is_alive()
    assert results[0]["result"] == [update]


def test_a_second_poller_ends_the_first_with_409(api, fake_telegram):
    results = []
    first = threading.Thread(target=lambda: results.append(api("getUpdates", json={"timeout": 30})))
    first.start()
    # Poll again until the first poll is over: a second poll that gets in before the first one
    # started waiting just returns, and the first one is ended by the next.
    wait_for(lambda: api("getUpdates", json={"timeout": 0}) and not first.is_alive())

    assert results[0].status_code == 409
    assert "terminated by other getUpdates request" in results[0].json()["description"]


def test_allowed_updates_filters_update_kinds(api, fake_telegram):
    fake_telegram.control.send_text(5, 5, "text")
    button = fake_telegram.control.press_button(5, 1, 5, "deny:abc")

    updates = api("getUpdates", json={"allowed_updates": ["callback_query"]}).json()["result"]

    assert updates == [button]


def test_get_updates_conflicts_with_a_webhook(api, receiver):
    api("setWebhook", json={"url": receiver().url})

    response = api("getUpdates", json={})

    assert response.status_code == 409
    assert "webhook is active" in response.json()["description"]


def test_redelivered_update_is_polled_again_after_being_confirmed(api, fake_telegram):
    update = fake_telegram.control.send_text(5, 5, "once")
    api("getUpdates", json={})
    api("getUpdates", json={"offset": update["update_id"] + 1})

    fake_telegram.control.redeliver(update["update_id"])
    updates = api("getUpdates", json={"offset": update["update_id"] + 1}).json()["result"]

    assert updates == [update]


def test_an_update_of_any_shape_is_delivered_as_given(api, fake_telegram):
    body = {"id": "q" * 1000, "from": {"id": 5}, "data": ["not", "a", "string"]}

    update = fake_telegram.control.send_update("callback_query", body)
    updates = api("getUpdates", json={}).json()["result"]

    assert updates == [update]
    assert update["callback_query"] == body


def test_send_update_refuses_a_body_that_is_not_an_object(fake_telegram):
    with pytest.raises(ControlError, match="body an object"):
        fake_telegram.control.send_update("message", "text")


# --- Webhook -------------------------------------------------------------------------------


def test_webhook_receives_updates_in_order_with_the_secret_header(api, fake_telegram, receiver):
    hook = receiver()
    api("setWebhook", json={"url": hook.url, "secret_token": "s3cret_token-1"})

    updates = [fake_telegram.control.send_text(5, 5, f"message {n}") for n in range(3)]
    wait_for(lambda: len(hook.received) == 3)

    assert [body for _, body in hook.received] == updates
    assert {headers[SECRET_HEADER] for headers, _ in hook.received} == {"s3cret_token-1"}
    assert api("getWebhookInfo").json()["result"]["pending_update_count"] == 0


def test_webhook_redelivers_the_same_update_until_it_is_acknowledged(api, fake_telegram, receiver):
    hook = receiver(statuses=[500, 403])
    api("setWebhook", json={"url": hook.url})

    first = fake_telegram.control.send_text(5, 5, "first")
    second = fake_telegram.control.send_text(5, 5, "second")
    wait_for(lambda: len(hook.received) == 4)

    assert [body["update_id"] for _, body in hook.received] == [
        first["update_id"],
        first["update_id"],
        first["update_id"],
        second["update_id"],
    ]
    info = api("getWebhookInfo").json()["result"]
    assert info["last_error_message"] == "Wrong response from the webhook: 403 Forbidden"
    assert fake_telegram.control.stats()["webhook_failed"] == 2


def test_an_unreachable_webhook_is_reported_in_webhook_info(api, fake_telegram):
    api("setWebhook", json={"url": "http://127.0.0.1:9/telegram/webhook/"})
    fake_telegram.control.send_text(5, 5, "lost")

    info = wait_for(
        lambda: (
            api("getWebhookInfo").json()["result"].get("last_error_message")
            and (api("getWebhookInfo").json()["result"])
        )
    )

    assert info["last_error_message"] == "Connection refused"
    assert info["pending_update_count"] == 1


def test_a_replayed_update_reaches_the_webhook_again(api, fake_telegram, receiver):
    hook = receiver()
    api("setWebhook", json={"url": hook.url})
    update = fake_telegram.control.send_text(5, 5, "once")
    wait_for(lambda: len(hook.received) == 1)

    fake_telegram.control.redeliver(update["update_id"])
    wait_for(lambda: len(hook.received) == 2)

    assert hook.received[1][1] == update


def test_setting_a_webhook_checks_the_secret_token(api, receiver):
    response = api("setWebhook", json={"url": receiver().url, "secret_token": "no spaces"})

    assert response.status_code == 400


def test_deleting_the_webhook_can_drop_pending_updates(api, fake_telegram):
    api("setWebhook", json={"url": "http://127.0.0.1:9/unreachable"})
    fake_telegram.control.send_text(5, 5, "never delivered")

    api("deleteWebhook", json={"drop_pending_updates": True})

    assert api("getUpdates", json={}).json()["result"] == []
    assert api("getWebhookInfo").json()["result"]["url"] == ""


# --- Flood limits ----------------------------------------------------------------------------


def flood_server(**limits):
    return FakeTelegramServer(flood=FloodLimits(**limits)).start()


def send(server, chat_id):
    url = f"{server.base_url}/bot{server.token}/sendMessage"
    return requests.post(url, json={"chat_id": chat_id, "text": "hi"}, timeout=10)


def test_sending_to_a_chat_faster_than_its_limit_answers_429_with_retry_after():
    server = flood_server(chat_per_second=0.01, chat_burst=2)
    try:
        answers = [send(server, 5) for _ in range(3)]
        other_chat = send(server, 6)
        stats = server.control.stats()
    finally:
        server.stop()

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    body = answers[2].json()
    assert body["error_code"] == 429
    assert body["parameters"]["retry_after"] >= 1
    assert int(answers[2].headers["Retry-After"]) == body["parameters"]["retry_after"]
    assert other_chat.status_code == 200
    assert stats["flood_limited"] == 1
    assert stats["too_many_requests"] == 1


def test_a_group_gets_twenty_messages_a_minute_by_default():
    server = flood_server(chat_per_second=100, chat_burst=100)
    try:
        answers = [send(server, -1001234).status_code for _ in range(21)]
    finally:
        server.stop()

    assert answers == [200] * 20 + [429]


def test_the_global_limit_spans_chats():
    server = flood_server(global_per_second=0.01, global_burst=3)
    try:
        answers = [send(server, chat).status_code for chat in range(1, 5)]
    finally:
        server.stop()

    assert answers == [200, 200, 200, 429]


def test_flood_limits_can_be_turned_off(fake_telegram, api):
    fake_telegram.control.configure_flood(enabled=False)

    answers = {api("sendMessage", json={"chat_id": 5, "text": "x"}).status_code for _ in range(10)}

    assert answers == {200}


# --- Fault injection ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403, 429, 500, 502, 503, 504])
def test_an_injected_fault_answers_the_next_calls_then_the_method_recovers(
    api, fake_telegram, status
):
    fake_telegram.control.inject("sendMessage", status, count=2, retry_after=3)

    answers = [api("sendMessage", json={"chat_id": 5, "text": "x"}) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [status, status, 200]
    if status == 429:
        assert answers[0].json()["parameters"]["retry_after"] == 3
    assert fake_telegram.control.stats()["calls"]["sendMessage"] == 3
    assert len(fake_telegram.control.sent()) == 1


def test_a_gateway_error_is_an_html_page_like_telegrams_front(api, fake_telegram):
    fake_telegram.control.inject("getMe", 502)

    response = api("getMe")

    assert response.headers["Content-Type"] == "text/html"


def test_a_fault_for_any_method(api, fake_telegram):
    fake_telegram.control.inject("*", 503)

    assert api("getWebhookInfo").status_code == 503
    assert api("getWebhookInfo").status_code == 200


def test_an_unsupported_fault_is_refused(fake_telegram):
    with pytest.raises(ControlError):
        fake_telegram.control.inject("sendMessage", 418)


def test_a_hung_answer_does_not_hold_up_other_requests(api, fake_telegram):
    fake_telegram.control.inject_hang("sendMessage", 30)

    def hang():
        # The fixture's teardown stops the server and so ends this call with a closed connection.
        with contextlib.suppress(requests.RequestException):
            api("sendMessage", json={"chat_id": 5, "text": "slow"})

    hung = threading.Thread(target=hang, daemon=True)
    hung.start()
    wait_for(lambda: fake_telegram.control.stats()["calls"].get("sendMessage"))

    assert api("getMe").json()["ok"] is True
    assert fake_telegram.control.sent() == []


def test_stop_does_not_wait_for_hung_answers():
    server = FakeTelegramServer().start()
    server.control.inject_hang("getMe", 600)
    url = f"{server.base_url}/bot{server.token}/getMe"
    errors = []

    def call():
        try:
            requests.post(url, timeout=60)
        except requests.RequestException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: server.control.stats()["calls"].get("getMe"))

    server.stop()
    caller.join(timeout=15)

    assert not caller.is_alive()
    assert errors


def test_an_injected_reset_drops_the_connection_without_an_answer(api, fake_telegram):
    fake_telegram.control.inject_reset("sendMessage")

    with pytest.raises(requests.ConnectionError):
        api("sendMessage", json={"chat_id": 5, "text": "x"})

    assert api("sendMessage", json={"chat_id": 5, "text": "x"}).status_code == 200


def test_reset_forgets_everything(api, fake_telegram):
    api("sendMessage", json={"chat_id": 5, "text": "x"})
    fake_telegram.control.send_text(5, 5, "hi")
    fake_telegram.control.inject("getMe", 500)

    fake_telegram.control.reset()

    assert fake_telegram.control.sent() == []
    assert fake_telegram.control.pending_updates() == []
    assert api("getMe").status_code == 200
    assert fake_telegram.control.stats()["calls"] == {"getMe": 1}


# --- Standalone ------------------------------------------------------------------------------


def test_the_command_serves_until_sigterm_and_never_prints_the_token(tmp_path):
    token = "987654321:StandaloneFakeServerToken_abcdef"  # pragma: allowlist secret
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "telegram_fake_server", "--port", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        base_url = line.removeprefix("TELEGRAM_API_BASE_URL=")
        me = requests.post(f"{base_url}/bot{token}/getMe", timeout=10).json()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        process.kill()

    assert line.startswith("TELEGRAM_API_BASE_URL=http://127.0.0.1:")
    assert me["ok"] is True
    assert process.returncode == 0
    assert token not in line + stdout + stderr
