"""The policy's reminders and escalations, as Telegram messages.

Subscribers of ``claims.events.ReminderDue`` and ``ApprovalEscalated``: each posts a new message
(with the request's buttons where its readers may vote) under a dedupe key naming the request and
the step, so a step published twice still sends once.
"""

from html import escape

from django.conf import settings

from claims import events

from . import outbox
from .models import TelegramAccount
from .notifications import render, when


def remind(event: events.ReminderDue) -> None:
    """Post a reminder to the approver chat, with the buttons, so it can be decided from there."""
    chat_id = settings.TELEGRAM_APPROVER_CHAT_ID
    if not chat_id:
        return
    approval = event.approval
    lead = f"⏰ <b>Reminder</b>: still waiting, {escape(event.tally.summary(), quote=False)}"
    outbox.enqueue(
        method="sendMessage",
        chat_id=chat_id,
        payload=render(approval, lead=lead, counted=event.tally),
        dedupe_key=f"approval:{approval.pk.hex}:reminder:{event.number}",
    )


def escalate(event: events.ApprovalEscalated) -> None:
    """Tell the escalation chat, and each linked member of the escalation group directly."""
    approval = event.approval
    widened = " You may vote on it now." if event.widened else ""
    lead = (
        f"🚨 <b>Escalated</b>: undecided since {when(approval.created_at)}, "
        f"{escape(event.tally.summary(), quote=False)}.{widened}"
    )
    message = render(approval, lead=lead, counted=event.tally)
    if not event.widened:
        message.pop("reply_markup", None)
    chats = [event.chat_id] if event.chat_id else []
    if event.group_id is not None:
        chats += TelegramAccount.objects.filter(
            is_active=True, user__is_active=True, user__groups=event.group_id
        ).values_list("telegram_user_id", flat=True)
    for chat_id in dict.fromkeys(chats):
        outbox.enqueue(
            method="sendMessage",
            chat_id=chat_id,
            payload=message,
            dedupe_key=f"approval:{approval.pk.hex}:escalated:{chat_id}",
        )
