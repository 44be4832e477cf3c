"""The approver chat's message follows its request through every change, from every channel.

The message is posted and edited on the fake Bot API in-process; what counts is how it looks in
the chat afterwards.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from backoffice.actors import system_actor
from claims import services
from claims.models import ApprovalRequest
from telegram_bridge import delivery, outbox

from .updates import APPROVER_CHAT

pytestmark = pytest.mark.django_db


def deliver_everything():
    outcomes = delivery.drain(seconds=20)
    assert set(outcomes) <= {"sent"}, outcomes


def the_message(fake):
    (message,) = fake.control.messages(APPROVER_CHAT)
    return message


def buttons(message):
    return message.get("reply_markup", {}).get("inline_keyboard", [])


@pytest.fixture
def posted(settings, fake_telegram_unthrottled, agent_actor):
    """A request whose message is in the approver chat with its buttons."""
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    approval = services.request_approval(
        kind="command", text="Restart worker-03", agent_id="ops-bot", actor=agent_actor
    )
    deliver_everything()
    assert buttons(the_message(fake_telegram_unthrottled))
    return approval


@pytest.fixture
def shell_without_telegram_settings(settings):
    """Whatever changes the request next runs where the approver chat is not configured."""
    settings.TELEGRAM_APPROVER_CHAT_ID = None


def test_expiry_edits_the_message_and_removes_its_buttons(
    posted, fake_telegram_unthrottled, shell_without_telegram_settings
):
    ApprovalRequest.objects.filter(pk=posted.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    (expired,) = services.expire_overdue(actor=system_actor("expire_approvals"))
    deliver_everything()

    message = the_message(fake_telegram_unthrottled)
    assert expired.pk == posted.pk
    assert "Expired" in message["text"]
    assert not buttons(message)


def test_archive_edits_the_message(
    posted, fake_telegram_unthrottled, approver_actor, shell_without_telegram_settings
):
    services.decide(posted.pk, "deny", actor=approver_actor)
    deliver_everything()
    assert "Denied by approver (admin)" in the_message(fake_telegram_unthrottled)["text"]

    services.archive(posted.pk, actor=approver_actor)
    deliver_everything()

    message = the_message(fake_telegram_unthrottled)
    assert "Archived" in message["text"]
    assert not buttons(message)


def test_decision_from_a_shell_without_telegram_settings_edits_the_message_in_its_chat(
    posted, fake_telegram_unthrottled, approver, shell_without_telegram_settings
):
    call_command("approvals", "approve", posted.short_id, "--user", approver.username)
    deliver_everything()

    message = the_message(fake_telegram_unthrottled)
    assert "Approved by approver (cli)" in message["text"]
    assert not buttons(message)


def test_execution_edits_the_message(
    posted, fake_telegram_unthrottled, approver_actor, agent_actor
):
    services.decide(posted.pk, "approve", actor=approver_actor)
    services.mark_executed(posted.pk, actor=agent_actor)
    deliver_everything()

    assert "Executed" in the_message(fake_telegram_unthrottled)["text"]


def test_a_request_never_posted_is_never_edited(db, settings, agent_actor, approver_actor):
    settings.TELEGRAM_APPROVER_CHAT_ID = None
    approval = services.request_approval(kind="claim", text="x", agent_id="a", actor=agent_actor)

    services.decide(approval.pk, "approve", actor=approver_actor)

    assert not outbox.exists(f"approval:{approval.pk.hex}:requested")
