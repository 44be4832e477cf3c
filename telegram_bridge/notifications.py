"""Telling the approver chat about approval requests, and keeping that message up to date.

``approval_requested`` and ``approval_decided`` are called by ``claims.services`` inside the
service's transaction, so a message is queued exactly when the change it describes commits. Both
are no-ops unless ``TELEGRAM_APPROVER_CHAT_ID`` is set.

One Telegram message per request: it is posted with Approve / Deny / Info buttons and then edited to
show the current state. The edit needs the Telegram id of the posted message, which only exists
once the outbox has sent it, so ``approval_decided`` looks at the outbox row of the original:

- sent: queue an ``editMessageText`` of that message;
- not sent yet (queued, failed, dead): rewrite the waiting message itself, so whoever sees it first
  sees the current state and no edit is needed;
- being sent right now: look again a little later (``tasks.refresh_approval_message``).

The policy's reminders and escalation (``claims.events.ReminderDue``, ``Escalated``) are new
messages, each under a dedupe key naming the request and the step, so each is sent once.
"""

from datetime import timedelta
from html import escape

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator
from django_q.models import Schedule
from django_q.tasks import schedule

from claims.events import DeadlinePassed, Escalated, ReminderDue, VoteCounted
from claims.models import ApprovalRequest
from claims.voting import Tally, tally

from . import outbox
from .models import OutboundMessage, TelegramAccount

Status = ApprovalRequest.Status

# Telegram counts at most 4096 characters per message; the request text gets the lion's share.
TEXT_LIMIT = 3000
# How long to wait before looking again at an original message that was being sent.
REFRESH_DELAY = timedelta(seconds=10)

STATE_LINES = {
    Status.APPROVED: "✅ Approved",
    Status.DENIED: "❌ Denied",
    Status.POSTPONED: "⏸ Postponed",
    Status.EXPIRED: "⌛ Expired",
    Status.EXECUTED: "▶️ Executed",
    Status.ARCHIVED: "🗄 Archived",
}


def requested_key(approval):
    """The outbox dedupe key of the message that announces ``approval``."""
    return f"approval:{approval.pk.hex}:requested"


def approval_requested(approval):
    """Queue the message asking the approver chat to decide ``approval``."""
    chat_id = settings.TELEGRAM_APPROVER_CHAT_ID
    if not chat_id:
        return None
    return outbox.enqueue(
        method="sendMessage",
        chat_id=chat_id,
        payload=render(approval),
        dedupe_key=requested_key(approval),
    )


def approval_decided(approval):
    """Make the approver chat's message about ``approval`` show its current state."""
    if not settings.TELEGRAM_APPROVER_CHAT_ID:
        return None
    original = (
        OutboundMessage.objects.select_for_update()
        .filter(dedupe_key=requested_key(approval))
        .first()
    )
    if original is None:
        return None
    if original.status == OutboundMessage.Status.SENT:
        if original.telegram_message_id is None:
            return None
        stamp = int(approval.updated_at.timestamp() * 1_000_000)
        return outbox.enqueue(
            method="editMessageText",
            chat_id=original.chat_id,
            payload={"message_id": original.telegram_message_id, **render(approval)},
            # One edit per state the request reaches; a request may come back to a state
            # (postponed, reopened, postponed again), so the key carries when it got there.
            dedupe_key=f"approval:{approval.pk.hex}:{approval.status}:{stamp}",
        )
    if original.status == OutboundMessage.Status.SENDING:
        schedule(
            "telegram_bridge.tasks.refresh_approval_message",
            str(approval.pk),
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + REFRESH_DELAY,
        )
        return None
    original.payload = {"chat_id": original.chat_id, **render(approval)}
    original.save(update_fields=["payload", "updated_at"])
    return original


def on_vote_counted(event: VoteCounted) -> None:
    """A vote that did not decide yet still changes the count the message shows."""
    approval_decided(event.approval)


def on_deadline_passed(event: DeadlinePassed) -> None:
    approval_decided(event.approval)


def on_reminder_due(event: ReminderDue) -> None:
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


def on_escalated(event: Escalated) -> None:
    """Tell the escalation chat, and each linked member of the escalation group directly."""
    approval = event.approval
    widened = " You may vote on it now." if event.widened else ""
    lead = (
        f"🚨 <b>Escalated</b>: undecided since {_when(approval.created_at)}, "
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


def refresh_approval_message(approval_id):
    """Bring the approver chat's message in line with the request (see the module docstring)."""
    with transaction.atomic():
        approval = ApprovalRequest.objects.filter(pk=approval_id).first()
        if approval is not None:
            approval_decided(approval)


def render(approval, *, lead="", counted: Tally | None = None):
    """The text (HTML) and the buttons of the message about ``approval`` in its current state.

    ``lead`` is a line put first (a reminder, an escalation); ``counted`` the votes, if the caller
    has counted them already.
    """
    counted = counted or tally(approval)
    lines = [lead, ""] if lead else []
    lines += [
        f"<b>Approval request</b> · {escape(approval.get_kind_display())}",
        "",
        escape(Truncator(approval.text).chars(TEXT_LIMIT), quote=False),
        "",
        f"Requested by {escape(approval.requested_by, quote=False)}",
        f"Id <code>{approval.short_id}</code> · expires {_when(approval.expires_at)}",
    ]
    if approval.claim is not None:
        lines.append(f"Claim: {escape(approval.claim.work_item, quote=False)}")
    awaiting = approval.status in ApprovalRequest.AWAITING_DECISION
    if awaiting and (counted.quorum > 1 or counted.approvals or counted.denials):
        lines.append(f"Votes: {escape(counted.summary(), quote=False)}")
    state = state_line(approval)
    if state:
        lines += ["", state]
    message = {"text": "\n".join(lines), "parse_mode": "HTML"}
    if awaiting:
        message["reply_markup"] = keyboard(approval, counted)
    return message


def state_line(approval):
    """``✅ Approved by alice (telegram) at …`` for a request that is no longer plainly pending."""
    line = STATE_LINES.get(approval.status)
    if line is None:
        return ""
    if approval.status == Status.EXPIRED:
        return f"{line} at {_when(approval.expires_at)}"
    if approval.decision_source == ApprovalRequest.DecisionSource.DEFAULT:
        return f"{line} by default: nobody decided by {_when(approval.decided_at)}"
    if approval.decided_by is not None:
        who = escape(approval.decided_by.get_username(), quote=False)
        source = f" ({approval.decision_source})" if approval.decision_source else ""
        line = f"{line} by {who}{source} at {_when(approval.decided_at)}"
    return line


def keyboard(approval, counted: Tally):
    """Approve / Deny / Info; with a quorum, the buttons show how many voted each way."""
    hex_id = approval.pk.hex
    approve, deny = "✅ Approve", "❌ Deny"
    if counted.quorum > 1:
        approve += f" {counted.approvals}/{counted.quorum}"
        if counted.deny_needs_quorum:
            deny += f" {counted.denials}/{counted.quorum}"
    return {
        "inline_keyboard": [
            [
                {"text": approve, "callback_data": f"approve:{hex_id}"},
                {"text": deny, "callback_data": f"deny:{hex_id}"},
                {"text": "🔍 Info", "callback_data": f"info:{hex_id}"},
            ]
        ]
    }


def _when(moment):
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M} {settings.TIME_ZONE}" if moment else "—"
