"""What the scheduler does for requests still waiting: remind the approvers, then escalate.

Each reminder and the escalation happen once per request however often the schedule runs (or
however many workers run it at once): the request's row is locked and the step recorded on it
(``reminders_sent``, ``escalated_at``) in the transaction that publishes the event. A reminder time
that passed while the scheduler was down is made up with one reminder, not a burst.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.services import record
from backoffice.actors import Actor

from . import events
from .models import ApprovalRequest
from .policies import Rules
from .representation import approval_data
from .voting import tally


def _awaiting(now: datetime) -> QuerySet:
    return ApprovalRequest.objects.filter(
        status__in=ApprovalRequest.AWAITING_DECISION, expires_at__gt=now
    )


def _each_locked(due: QuerySet):
    """Each request of ``due``, locked in its own transaction and checked again under the lock."""
    for approval_id in list(due.values_list("id", flat=True)):
        with transaction.atomic():
            approval = due.select_for_update().filter(pk=approval_id).first()
            if approval is not None:
                yield approval


def send_reminders(*, actor: Actor, now: datetime | None = None) -> list[ApprovalRequest]:
    """Remind the approver chat of each request whose next reminder time has come."""
    now = now or timezone.now()
    reminded = []
    for approval in _each_locked(_awaiting(now).filter(next_reminder_at__lte=now)):
        times = Rules.from_request(approval).reminder_times(approval.expires_at)
        passed = sum(1 for moment in times if moment <= now)
        approval.next_reminder_at = times[passed] if passed < len(times) else None
        due = passed > approval.reminders_sent
        approval.reminders_sent = max(passed, approval.reminders_sent)
        approval.save(update_fields=["next_reminder_at", "reminders_sent", "updated_at"])
        if due:
            counted = tally(approval)
            record(
                "approval.reminded",
                actor=actor,
                obj=approval,
                details={**approval_data(approval), "reminder": passed, "of": len(times)},
            )
            events.publish(events.ReminderDue(actor, approval, passed, counted))
            reminded.append(approval)
    return reminded


def escalate(*, actor: Actor, now: datetime | None = None) -> list[ApprovalRequest]:
    """Escalate each request still undecided at its escalation time, widening if the policy says."""
    now = now or timezone.now()
    escalated = []
    due = _awaiting(now).filter(escalate_at__lte=now, escalated_at__isnull=True)
    for approval in _each_locked(due):
        rules = Rules.from_request(approval)
        approval.escalated_at = now
        approval.save(update_fields=["escalated_at", "updated_at"])
        counted = tally(approval)
        widened = rules.widen_on_escalation and rules.escalation_group is not None
        record(
            "approval.escalated",
            actor=actor,
            obj=approval,
            details={
                **approval_data(approval),
                "escalation_group": rules.escalation_group,
                "escalation_chat_id": rules.escalation_chat_id,
                "widened": widened,
            },
        )
        events.publish(
            events.ApprovalEscalated(
                actor, approval, rules.escalation_group, rules.escalation_chat_id, widened, counted
            )
        )
        escalated.append(approval)
    return escalated
