"""A button press delivered again and again decides once, answers once and edits once."""

import pytest

from audit.models import AuditEvent
from claims import services
from claims.models import ApprovalRequest
from telegram_bridge import delivery, inbound
from telegram_bridge.client import get_client
from telegram_bridge.models import InboundUpdate
from telegram_bridge.polling import Poller

from .updates import ALICE, APPROVER_CHAT, button_update
from .worker import wait_for

REPLAYS = 100
WEBHOOK_SECRET = "replay-webhook-secret"


@pytest.fixture
def telegram(settings, fake_telegram_unthrottled):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    settings.TELEGRAM_WEBHOOK_SECRET = WEBHOOK_SECRET
    return fake_telegram_unthrottled


@pytest.fixture
def announced(telegram, approver_account, agent_actor):
    """A request whose message reached the approver chat; returns (approval, message_id)."""
    approval = services.request_approval(
        kind="command", text="Deploy", agent_id="agent-7", actor=agent_actor
    )
    delivery.drain(seconds=10)
    (message,) = telegram.control.sent(chat_id=APPROVER_CHAT, method="sendMessage")
    return approval, message["message_id"]


def press_approve(telegram, announced, *, replays=0):
    """Alice presses Approve on the announced message; Telegram sends it ``replays`` times more."""
    approval, message_id = announced
    press = telegram.control.press_button(
        APPROVER_CHAT, message_id, ALICE, f"approve:{approval.pk.hex}"
    )
    for _ in range(replays):
        telegram.control.redeliver(press["update_id"])
    return press


def process_received():
    for pk in InboundUpdate.objects.filter(status="received").values_list("pk", flat=True):
        inbound.process(pk)


def assert_decided_answered_and_edited_once(telegram, approval):
    delivery.drain(seconds=10)
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED
    assert AuditEvent.objects.filter(action="approval.approved").count() == 1
    assert len(telegram.control.sent(method="answerCallbackQuery")) == 1
    assert len(telegram.control.sent(method="editMessageText")) == 1


@pytest.mark.django_db(transaction=True)
def test_press_replayed_by_the_webhook_decides_once(telegram, announced, live_server):
    approval, _ = announced
    get_client().call(
        "setWebhook",
        {"url": f"{live_server.url}/telegram/webhook/", "secret_token": WEBHOOK_SECRET},
    )
    press = press_approve(telegram, announced, replays=REPLAYS)

    wait_for(
        lambda: telegram.control.stats()["webhook_delivered"] >= REPLAYS + 1,
        message="the fake to deliver every copy to the webhook",
    )
    assert InboundUpdate.objects.filter(update_id=press["update_id"]).count() == 1
    process_received()
    assert_decided_answered_and_edited_once(telegram, approval)


@pytest.mark.django_db
def test_press_replayed_by_get_updates_decides_once(telegram, announced):
    approval, _ = announced
    press = press_approve(telegram, announced, replays=REPLAYS)
    poller = Poller(timeout=0, process_inline=True)

    wait_for(lambda: poller.poll_once() == 0, message="getUpdates to run dry")

    assert InboundUpdate.objects.filter(update_id=press["update_id"]).count() == 1
    assert_decided_answered_and_edited_once(telegram, approval)


@pytest.mark.django_db
def test_same_callback_query_under_new_update_ids_decides_once(telegram, announced):
    approval, message_id = announced
    press = press_approve(telegram, announced)
    for _ in range(REPLAYS):
        update = button_update(
            f"approve:{approval.pk.hex}",
            message_id=message_id,
            query_id=press["callback_query"]["id"],
        )
        inbound.process(inbound.store(update, dispatch=False).update.pk)

    assert InboundUpdate.objects.filter(status="processed").count() == 1
    assert InboundUpdate.objects.filter(status="ignored").count() == REPLAYS - 1
    assert_decided_answered_and_edited_once(telegram, approval)
