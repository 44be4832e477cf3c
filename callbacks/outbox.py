"""Queueing callbacks: the subscriber to the events that settle an approval request.

It runs inside the transaction of the decision (or the expiry), so the callback exists exactly
when the decision was committed; a worker POSTs it after commit (``delivery``).
"""

import json
from functools import partial

from django.db import transaction
from django.utils import timezone

from backoffice.cli import JSONEncoder
from claims.events import ApprovalEvent
from claims.models import ApprovalRequest
from claims.representation import approval_data
from telegram_bridge.outbox import queue_task

from .models import Callback, CallbackTarget
from .services import DELIVER_TASK

Status = ApprovalRequest.Status

# A postponed or reopened request still awaits its decision: no callback for those.
SETTLED = {Status.APPROVED, Status.DENIED, Status.EXPIRED}


def body_of(approval: ApprovalRequest) -> str:
    """The JSON text that is signed and sent: the event and the request as every channel
    shows it."""
    data = {"event": f"approval.{approval.status}", "approval": approval_data(approval)}
    return json.dumps(data, cls=JSONEncoder, sort_keys=True, separators=(",", ":"))


def approval_settled(event: ApprovalEvent) -> None:
    """Queue the callback of a request that was just approved, denied or expired, if it has a
    callback URL. Its idempotency key names the request and the outcome, so it is queued once."""
    approval = event.approval
    if approval.status not in SETTLED:
        return
    target = CallbackTarget.objects.filter(approval=approval).first()
    if target is None:
        return
    callback, created = Callback.objects.get_or_create(
        idempotency_key=f"approval-{approval.pk}-{approval.status}",
        defaults={"target": target, "body": body_of(approval), "next_attempt_at": timezone.now()},
    )
    if created:
        transaction.on_commit(partial(queue_task, DELIVER_TASK, callback.pk))
