import json

import pytest

from claims import services
from claims.models import ApprovalRequest
from telegram_bridge.models import InboundUpdate

from .updates import ALICE, APPROVER_CHAT, button_update, text_update
from .worker import wait_for

URL = "/telegram/webhook/"
SECRET = "webhook-secret-for-tests"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET


def post(client, body, *, secret=SECRET, **extra):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret} if secret is not None else {}
    return client.post(URL, body, content_type="application/json", **headers, **extra)


@pytest.mark.django_db
def test_update_with_the_right_secret_is_stored_and_acknowledged(client):
    update = text_update("/status")

    response = post(client, update)

    assert response.status_code == 200
    assert response.json() == {"ok": True, "duplicate": False}
    stored = InboundUpdate.objects.get()
    assert stored.update_id == update["update_id"]
    assert stored.payload == update
    assert stored.status == InboundUpdate.Status.RECEIVED


@pytest.mark.django_db
@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
def test_wrong_or_missing_secret_is_forbidden_and_nothing_is_stored(client, secret):
    response = post(client, text_update("/status"), secret=secret)

    assert response.status_code == 403
    assert not InboundUpdate.objects.exists()


@pytest.mark.django_db
def test_webhook_is_disabled_while_no_secret_is_configured(client, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = ""

    response = post(client, text_update("/status"), secret="")

    assert response.status_code == 404
    assert not InboundUpdate.objects.exists()


@pytest.mark.django_db
def test_only_post_is_allowed(client):
    response = client.get(URL, HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET)

    assert response.status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"{", b"not json", b"", b"\xff\xfe\x00garbage", b'{"a": 1}}'])
def test_malformed_json_is_a_bad_request(client, body):
    response = post(client, body)

    assert response.status_code == 400
    assert not InboundUpdate.objects.exists()


@pytest.mark.django_db
def test_body_over_the_limit_is_refused_with_413(client):
    update = text_update("x" * (1024 * 1024))

    response = post(client, update)

    assert response.status_code == 413
    assert not InboundUpdate.objects.exists()


@pytest.mark.django_db
def test_declared_content_length_over_the_limit_is_refused_before_reading(client, settings):
    settings.TELEGRAM_WEBHOOK_MAX_BYTES = 1000

    response = post(client, text_update("/status"), CONTENT_LENGTH="1001")

    assert response.status_code == 413


@pytest.mark.django_db
def test_body_of_exactly_the_limit_is_accepted(client, settings):
    update = text_update("/status")
    body = json.dumps(update)
    settings.TELEGRAM_WEBHOOK_MAX_BYTES = len(body)

    assert post(client, body).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        [],
        "update",
        17,
        None,
        {},
        {"update_id": "17"},
        {"update_id": True},
        {"update_id": 1.5},
        {"update_id": -1},
        {"update_id": 2**64},
    ],
)
def test_anything_but_an_update_object_with_a_valid_id_is_a_bad_request(client, body):
    response = post(client, body)

    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert not InboundUpdate.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["edited_message", "channel_post", "poll", "my_chat_member"])
def test_unknown_update_types_are_acknowledged_and_ignored(client, kind):
    response = post(client, {"update_id": 42, kind: {"id": "1"}})

    assert response.status_code == 200
    stored = InboundUpdate.objects.get()
    assert stored.status == InboundUpdate.Status.IGNORED
    assert stored.processed_at is not None


@pytest.mark.django_db
def test_duplicate_update_id_is_acknowledged_and_stored_once(client):
    update = button_update("approve:" + "0" * 32)

    first = post(client, update)
    second = post(client, update)

    assert first.status_code == second.status_code == 200
    assert second.json() == {"ok": True, "duplicate": True}
    assert InboundUpdate.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"update_id": 5, "message": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
        b'{"update_id": 5, "message": {"text": "NaN", "n": NaN}}',
        b'{"update_id": 5, "message": {"n": 1e999}}',
        b'{"update_id": 5, "message": {"n": -Infinity}}',
        b'{"update_id": NaN}',
        b'{"update_id": 1e3}',
        b'{"update_id": 99999999999999999999999999999999}',
        b'{"update_id": 6, "message": {"text": "\\u0000", "chat": {"id": 99999999999999999999}}}',
        b'{"update_id": 7, "callback_query": "not an object", "\\u0000": 1}',
        '{"update_id": 8, "message": {"text": "emoji \ud83d\ude00 and \u00e9"}}'.encode(
            "utf-8", "surrogatepass"
        ),
    ],
)
def test_odd_bodies_never_cause_a_server_error(client, body):
    response = post(client, body)

    assert response.status_code in (200, 400)


@pytest.mark.django_db
def test_update_with_nul_characters_is_stored_without_them(client):
    response = post(client, b'{"update_id": 9, "message": {"text": "a\\u0000b"}}')

    assert response.status_code == 200
    assert InboundUpdate.objects.get().payload["message"]["text"] == "a\ufffdb"


def test_button_press_through_the_webhook_is_decided_by_a_real_worker(
    client, settings, qcluster, fake_telegram, approver_account, agent_actor
):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    qcluster.start(TELEGRAM_APPROVER_CHAT_ID=APPROVER_CHAT)
    control = fake_telegram.control
    approval = services.request_approval(
        kind="manifest", text="Release 2.0", agent_id="ci", actor=agent_actor
    )
    (message,) = wait_for(
        lambda: control.sent(chat_id=APPROVER_CHAT, method="sendMessage"),
        message="the request message",
    )
    press = control.press_button(
        APPROVER_CHAT, message["message_id"], ALICE, f"approve:{approval.pk.hex}"
    )

    assert post(client, press).status_code == 200

    (edit,) = wait_for(
        lambda: control.sent(chat_id=APPROVER_CHAT, method="editMessageText"),
        message=f"the edit of the request message\n{qcluster.output()}",
    )
    assert edit["message_id"] == message["message_id"]
    assert "Approved by approver (telegram)" in edit["payload"]["text"]
    wait_for(lambda: control.sent(method="answerCallbackQuery"), message="the answer")
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED
    assert InboundUpdate.objects.get().status == InboundUpdate.Status.PROCESSED
