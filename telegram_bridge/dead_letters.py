"""Dead letters: giving failed and dead messages another round, by hand or on a schedule.

Staff requeue from the admin, the API or ``manage.py outbox requeue``; ``auto_requeue`` runs on a
schedule for messages that died of transient failures. Every requeue is audited as
``telegram.requeued`` and handed to a worker after commit.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.services import record
from backoffice.actors import Actor, system_actor
from backoffice.errors import InvalidTransition, NotFound, NotPermitted

from . import outbox
from .models import OutboundMessage

Status = OutboundMessage.Status

REQUEUE_PERMISSION = "telegram_bridge.requeue_outboundmessage"
REQUEUABLE = (Status.FAILED, Status.DEAD)


def _require_requeue_permission(actor: Actor) -> None:
    if not actor.has_perm(REQUEUE_PERMISSION):
        raise NotPermitted(f"{actor.name} may not requeue outbound messages.")


def requeue(message_id: object, *, actor: Actor) -> bool:
    """Give a failed or dead message a fresh set of attempts; audited as ``telegram.requeued``.

    Returns False when the message is already queued (nothing to do). A message being sent or
    already sent cannot be requeued: that would send it twice.
    """
    _require_requeue_permission(actor)
    with transaction.atomic():
        message = outbox.get(message_id, lock=True)
        if message.status == Status.QUEUED:
            return False
        _requeue(message, actor=actor)
    return True


class RequeueReport(NamedTuple):
    """What ``requeue_many`` did: the ids it requeued and why it skipped the others."""

    requeued: list[object]
    skipped: list[str]

    def __str__(self) -> str:
        text = f"{len(self.requeued)} requeued"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped: {', '.join(self.skipped)}"
        return text


def requeue_many(message_ids: Iterable[object], *, actor: Actor) -> RequeueReport:
    """``requeue`` each message in its own transaction; one that cannot be requeued is skipped.

    Refused as a whole, even for no messages, when the actor may not requeue.
    """
    _require_requeue_permission(actor)
    report = RequeueReport([], [])
    for message_id in message_ids:
        try:
            changed = requeue(message_id, actor=actor)
        except InvalidTransition as error:
            report.skipped.append(f"#{message_id} is {error.status}")
        except NotFound:
            report.skipped.append(f"#{message_id} does not exist")
        else:
            if changed:
                report.requeued.append(message_id)
            else:
                report.skipped.append(f"#{message_id} is already queued")
    return report


def requeue_candidates(now: datetime | None = None) -> QuerySet[OutboundMessage]:
    """Dead messages the automatic requeue may retry, oldest failure first, one batch.

    Only messages that died of transient failures (retries exhausted, a worker lost), failed
    within ``OUTBOX_REQUEUE_WINDOW_HOURS`` and were requeued fewer than ``OUTBOX_REQUEUE_MAX``
    times. A refusal (400, 401, 403, 404) needs a person to fix its cause first.
    """
    now = now or timezone.now()
    return (
        OutboundMessage.objects.filter(
            status=Status.DEAD,
            requeues__lt=settings.OUTBOX_REQUEUE_MAX,
            failed_at__gte=now - timedelta(hours=settings.OUTBOX_REQUEUE_WINDOW_HOURS),
        )
        .filter(Q(last_status_code__isnull=True) | ~Q(last_status_code__range=(400, 499)))
        .order_by("failed_at", "id")[: settings.OUTBOX_REQUEUE_BATCH]
    )


def auto_requeue(now: datetime | None = None) -> list[OutboundMessage]:
    """Requeue one batch of ``requeue_candidates``; returns the requeued messages."""
    actor = system_actor("auto_requeue")
    requeued = []
    with transaction.atomic():
        candidates = requeue_candidates(now).select_for_update(skip_locked=True)
        for message in candidates:
            _requeue(message, actor=actor)
            requeued.append(message)
    return requeued


def _requeue(message: OutboundMessage, *, actor: Actor) -> None:
    if message.status not in REQUEUABLE:
        raise InvalidTransition(
            f"#{message.pk} is {message.status}; only failed or dead messages can be requeued.",
            status=message.status,
        )
    previous = message.status
    message.status = Status.QUEUED
    message.attempts = 0
    message.requeues += 1
    message.next_attempt_at = timezone.now()
    message.save(update_fields=["status", "attempts", "requeues", "next_attempt_at", "updated_at"])
    record(
        "telegram.requeued",
        actor=actor,
        obj=message,
        details={
            "method": message.method,
            "chat_id": message.chat_id,
            "previous_status": previous,
            "requeues": message.requeues,
            "last_error": message.last_error,
            "last_status_code": message.last_status_code,
        },
    )
    transaction.on_commit(partial(outbox.hand_to_worker, message.pk))


def dead_message_ids() -> list[int]:
    """Every dead message's id, oldest first."""
    return list(
        OutboundMessage.objects.filter(status=Status.DEAD)
        .order_by("id")
        .values_list("id", flat=True)
    )
