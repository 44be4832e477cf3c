"""One bad update never blocks the others: it is kept as failed, acknowledged, and retryable."""

import json
import time
from itertools import pairwise

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from model_bakery import baker

from audit.models import AuditEvent
from telegram_bridge import inbound
from telegram_bridge.models import InboundUpdate
from telegram_bridge.polling import Poller

from .updates import ALICE, APPROVER_CHAT, button_update, text_update
from .worker import wait_for

URL = "/telegram/webhook/"
SECRET = "webhook-secret-for-tests"  # pragma: allowlist secret
Status = InboundUpdate.Status


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET


def post_raw(client, body):
    return client.post(
        URL,
        body,
        content_type="application/json",
        HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET,
    )


def lone_surrogate_update(update_id):
    # json.dumps would escape the surrogate the same way Telegram's JSON may carry it.
    return json.dumps({"update_id": update_id, "message": {"text": "\ud800"}})


@pytest.mark.django_db
def test_an_update_with_invalid_unicode_is_quarantined_and_the_next_one_goes_through(client):
    response = post_raw(client, lone_surrogate_update(1))
    after = text_update("/help")
    second = post_raw(client, json.dumps(after))

    assert response.status_code == 200
    assert second.status_code == 200
    failed = InboundUpdate.objects.get(update_id=1)
    assert failed.status == Status.FAILED
    assert "message.text is not valid Unicode text" in failed.error
    assert failed.payload == {"update_id": 1, "message": {"text": "\ufffd"}}
    assert InboundUpdate.objects.get(update_id=after["update_id"]).status == Status.RECEIVED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (button_update("approve:" + "a" * 32, query_id="q" * 100_000), "callback_query.id is"),
        (button_update("x" * 5000), "callback_query.data is longer than"),
        (text_update("/help", chat_id="-100"), "message.chat.id must be a whole number"),
        (text_update(["/help"]), "message.text must be a string"),
        (text_update("x" * 4097), "message.text is longer than 4096"),
    ],
    ids=["huge-callback-id", "long-data", "chat-id-string", "text-list", "long-text"],
)
def test_fields_of_the_wrong_type_or_size_are_quarantined_with_the_reason(client, update, reason):
    response = post_raw(client, json.dumps(update))

    assert response.status_code == 200
    row = InboundUpdate.objects.get(update_id=update["update_id"])
    assert row.status == Status.FAILED
    assert reason in row.error
    assert row.processed_at is not None


@pytest.mark.django_db
def test_a_failed_update_is_not_processed_by_the_worker():
    stored = inbound.store(button_update("approve:" + "a" * 32, query_id="q" * 300))

    assert inbound.process(stored.update.pk) is None
    stored.update.refresh_from_db()
    assert stored.update.status == Status.FAILED


@pytest.mark.django_db
def test_the_poller_moves_past_a_poison_update(settings, fake_telegram_unthrottled):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    control = fake_telegram_unthrottled.control
    poison = control.send_text(APPROVER_CHAT, ALICE, "\ud800")["update_id"]
    later = control.send_text(APPROVER_CHAT, ALICE, "/help")["update_id"]
    poller = Poller(timeout=0)

    assert poller.poll_once() == 2
    assert poller.offset == later + 1
    assert InboundUpdate.objects.get(update_id=poison).status == Status.FAILED
    assert InboundUpdate.objects.get(update_id=later).status == Status.RECEIVED
    assert poller.poll_once() == 0
    assert control.pending_updates() == []


@pytest.mark.django_db
def test_staff_retry_a_failed_update_from_the_admin_and_it_is_audited(
    client, approver, settings, fake_telegram_unthrottled
):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    approver.user_permissions.add(
        Permission.objects.get(codename="view_inboundupdate"),
        Permission.objects.get(codename="retry_inboundupdate"),
    )
    post_raw(client, lone_surrogate_update(77))
    client.force_login(approver)

    response = client.post(
        reverse("admin:telegram_bridge_inboundupdate_changelist"),
        {"action": "retry_selected", "_selected_action": [InboundUpdate.objects.get().pk]},
        follow=True,
    )

    assert response.status_code == 200
    row = InboundUpdate.objects.get(update_id=77)
    # What was kept of it (the text, its bad character replaced) is handled now.
    assert row.status != Status.FAILED
    assert AuditEvent.objects.filter(action="telegram.update_retried").count() == 1


@pytest.mark.django_db
def test_retrying_needs_the_permission(client):
    staff = baker.make("auth.User", is_staff=True, is_active=True)
    post_raw(client, lone_surrogate_update(78))
    client.force_login(staff)

    client.post(
        reverse("admin:telegram_bridge_inboundupdate_changelist"),
        {"action": "retry_selected", "_selected_action": [InboundUpdate.objects.get().pk]},
    )

    assert InboundUpdate.objects.get().status == Status.FAILED
    assert not AuditEvent.objects.filter(action="telegram.update_retried").exists()


class InstantEmptyClient:
    """A server that answers getUpdates at once with nothing, as some proxies do."""

    read_timeout = 1.0

    def __init__(self, poller_calls):
        self.calls = poller_calls

    def call(self, method, payload, timeout=None):
        self.calls.append(time.monotonic())
        if len(self.calls) == 4:
            self.poller.stop()
        return []


@pytest.mark.django_db(transaction=True)
def test_the_poller_keeps_a_minimum_spacing_between_empty_answers(settings):
    settings.TELEGRAM_POLL_EMPTY_INTERVAL = 0.2
    calls = []
    client = InstantEmptyClient(calls)
    poller = Poller(timeout=0, client=client)
    client.poller = poller

    poller.run()

    wait_for(lambda: len(calls) == 4, message="four getUpdates calls")
    gaps = [later - earlier for earlier, later in pairwise(calls)]
    assert min(gaps) >= 0.2
