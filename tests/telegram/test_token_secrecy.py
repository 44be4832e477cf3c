"""The bot token appears in no log line and in no database row, even when calls fail."""

import json
import logging

import pytest
from django.apps import apps
from django.test import Client
from django_q.models import OrmQ, Task
from django_q.tasks import async_task

from backoffice.redaction import REDACTED
from claims import services
from claims.models import ApprovalRequest
from telegram_bridge.models import InboundUpdate, OutboundMessage
from telegram_bridge.polling import Poller

from .updates import ALICE, APPROVER_CHAT, text_update
from .worker import wait_for

WEBHOOK_SECRET = "secrecy-webhook-secret"


@pytest.fixture
def every_log_record(caplog):
    """caplog at DEBUG on every logger, including those that do not propagate to the root."""
    caplog.set_level(logging.DEBUG)
    quiet = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in quiet:
        logger.addHandler(caplog.handler)
    previous = {
        logger: logger.level
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    }
    for logger in previous:
        logger.setLevel(logging.DEBUG)
    yield caplog
    for logger, level in previous.items():
        logger.setLevel(level)
    for logger in quiet:
        logger.removeHandler(caplog.handler)


def run_task(name, *args):
    """Run a task the way a worker does (django-q2, result saved), but in this process."""
    async_task(name, *args, sync=True)


def database_text():
    """Every row of every table, as text."""
    rows = []
    for model in apps.get_models():
        for row in model._base_manager.values_list():
            rows.append(f"{model._meta.label}: {row!r}")
    return "\n".join(rows)


@pytest.mark.django_db(transaction=True)
def test_token_is_never_logged_or_stored(
    settings, fake_telegram_unthrottled, approver_account, agent_actor, every_log_record, capfd
):
    telegram = fake_telegram_unthrottled
    token = settings.TELEGRAM_BOT_TOKEN
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    settings.TELEGRAM_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.TELEGRAM_RETRY_TOTAL = 1
    settings.TELEGRAM_RETRY_BACKOFF = 0.01
    settings.OUTBOX_BACKOFF_BASE = 0.01
    settings.OUTBOX_BACKOFF_MAX = 0.01

    # Request → message, through a burst of 5xx answers that leave an error behind.
    telegram.control.inject("sendMessage", 502, count=2)
    approval = services.request_approval(
        kind="command", text="Rotate keys", agent_id="agent-7", actor=agent_actor
    )
    run_task("telegram_bridge.tasks.sweep")
    wait_for(
        lambda: (
            run_task("telegram_bridge.tasks.sweep") or telegram.control.sent(method="sendMessage")
        ),
        message="the request message",
    )
    (message,) = telegram.control.sent(method="sendMessage")

    # Button press → decision → edit; the answer is refused (403) and dies with its error stored.
    telegram.control.inject("answerCallbackQuery", 403)
    telegram.control.press_button(
        APPROVER_CHAT, message["message_id"], ALICE, f"approve:{approval.pk.hex}"
    )
    Poller(timeout=0).poll_once()
    for pk in InboundUpdate.objects.values_list("pk", flat=True):
        run_task("telegram_bridge.tasks.process_update", pk)
    run_task("telegram_bridge.tasks.sweep")

    # The webhook path too, with a reply that goes out through the outbox.
    response = Client().post(
        "/telegram/webhook/",
        json.dumps(text_update("/status")),
        content_type="application/json",
        HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=WEBHOOK_SECRET,
    )
    assert response.status_code == 200
    for pk in InboundUpdate.objects.filter(status="received").values_list("pk", flat=True):
        run_task("telegram_bridge.tasks.process_update", pk)
    run_task("telegram_bridge.tasks.sweep")

    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED
    assert telegram.control.sent(method="editMessageText")
    assert OutboundMessage.objects.get(dedupe_key__endswith=":requested").attempts > 1
    answer = OutboundMessage.objects.get(method="answerCallbackQuery")
    assert (answer.status, answer.last_status_code) == ("dead", 403)
    assert len(telegram.control.sent(chat_id=APPROVER_CHAT, method="sendMessage")) == 2

    captured = capfd.readouterr()
    logs = every_log_record.text + captured.out + captured.err
    # The HTTP libraries did log the Bot API URLs, with the token taken out.
    assert f"/bot{REDACTED}/sendMessage" in logs
    assert token not in logs
    assert token.split(":")[1] not in logs
    # The dump covers the task queue too: tasks run through django-q2 and queued for workers.
    assert Task.objects.exists()
    assert settings.REDIS_URL or OrmQ.objects.exists()
    stored = database_text()
    assert "Rotate keys" in stored
    assert token not in stored
    assert token.split(":")[1] not in stored
