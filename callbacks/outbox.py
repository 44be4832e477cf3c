"""Queueing callbacks: the subscribers to the events that settle an approval request or end a job.

They run inside the transaction of the decision (the expiry, the job's end), so the callback
exists exactly when that change was committed; a worker POSTs it after commit (``delivery``).
"""

import json
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from automation.events import JobEnded
from automation.models import Job
from automation.representation import job_data, step_data
from backoffice.cli import JSONEncoder
from backoffice.inserts import insert_once
from claims.events import ApprovalEvent
from claims.models import ApprovalRequest
from claims.representation import approval_data
from telegram_bridge.outbox import queue_task

from .models import Callback, CallbackTarget
from .services import DELIVER_TASK

Status = ApprovalRequest.Status

# A postponed or reopened request still awaits its decision: no callback for those.
SETTLED = {Status.APPROVED, Status.DENIED, Status.EXPIRED}


def _text(data: dict[str, Any]) -> str:
    """The JSON text that is signed and sent."""
    return json.dumps(data, cls=JSONEncoder, sort_keys=True, separators=(",", ":"))


def body_of(approval: ApprovalRequest) -> str:
    """The event and the request as every channel shows it."""
    return _text({"event": f"approval.{approval.status}", "approval": approval_data(approval)})


def job_body_of(job: Job) -> str:
    """The event and the job as the API shows it, its steps without their output (which the
    receiver reads with ``GET /api/v1/jobs/{id}/`` if it wants it)."""
    data = {
        **job_data(job, steps=False),
        "steps": [step_data(s, output=False) for s in job.steps.all()],
    }
    return _text({"event": f"job.{job.status}", "job": data})


def _queue(target: CallbackTarget, idempotency_key: str, body: str) -> None:
    """Queue one callback; one with this key already queued is not queued twice."""
    callback = Callback(
        target=target, idempotency_key=idempotency_key, body=body, next_attempt_at=timezone.now()
    )
    if insert_once(callback, unique_field="idempotency_key"):
        transaction.on_commit(partial(queue_task, DELIVER_TASK, callback.pk))


def approval_settled(event: ApprovalEvent) -> None:
    """Queue the callback of a request that was just approved, denied or expired, if it has a
    callback URL. Its idempotency key names the request and the outcome, so it is queued once."""
    approval = event.approval
    if approval.status not in SETTLED:
        return
    try:
        target = approval.callback_target
    except CallbackTarget.DoesNotExist:
        return
    _queue(target, f"approval-{approval.pk}-{approval.status}", body_of(approval))


def job_ended(event: JobEnded) -> None:
    """Queue the callback of a job that just ended, if it was submitted with a callback URL.

    Its key names the job and how it ended (``job-<id>-<status>``); a re-run that ends again
    adds its run's number (``-run<N>``), so each end is announced once.
    """
    job = event.job
    target = CallbackTarget.objects.filter(job=job).first()
    if target is None:
        return
    key = f"job-{job.pk}-{job.status}" + (f"-run{job.runs}" if job.runs > 1 else "")
    _queue(target, key, job_body_of(job))
