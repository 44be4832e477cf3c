"""What happens to jobs: submit, queue on approval, start, each step, end, cancel, re-run, resume.

Every function here is one transaction: the change, its audit event, its event (and so the
Telegram outbox rows its subscribers write) commit together. The runner (``runner.py``) calls
these between the steps it runs; the admin, the API and the ``jobs`` command call them too, so a
rule lives once. A worker's writes name the worker: one that lost its job (the sweep resumed it
elsewhere) changes nothing any more (``LostJob``).
"""

import shlex
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import Truncator

from audit.services import record
from backoffice import queues
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput, InvalidTransition, NotPermitted
from backoffice.limits import max_length
from claims import events as claim_events
from claims import services as claims
from claims.models import ApprovalRequest, Kind

from . import events, manifest
from .errors import CommandNotAllowed
from .models import Job, JobStep
from .representation import job_data, step_data
from .selectors import get_job, job_for_approval, stalled_jobs

Status = Job.Status
StepStatus = JobStep.Status
Approval = ApprovalRequest.Status

CANCEL_PERMISSION = "automation.cancel_job"
RERUN_PERMISSION = "automation.rerun_job"
RUN_TASK = "automation.tasks.run_next"
DRY_RUN_OUTPUT = "DRY_RUN"

END_ACTIONS = {
    Status.SUCCEEDED: "job.completed",
    Status.FAILED: "job.failed",
    Status.CANCELLED: "job.cancelled",
    Status.REFUSED: "job.refused",
}


class LostJob(Exception):
    """This worker no longer runs the job (the sweep gave it to another): stop, write nothing."""


def runner_actor(job: Job) -> Actor:
    """Who acts while a job runs: its submitter, through the runner, labelled with the job."""
    return Actor(source=Source.SYSTEM, user=job.submitted_by, label=f"job-{job.short_id}")


def queue_run() -> None:
    """Ask the runner cluster, after commit, to take up the next job that may run."""
    transaction.on_commit(lambda: queues.queue(RUN_TASK, queue_name=settings.AUTOMATION_QUEUE))


def _details(job: Job, **extra: Any) -> dict[str, Any]:
    return {**job_data(job, steps=False), **extra}


# --- Submitting -----------------------------------------------------------------------------


def _request_text(job_id: uuid.UUID, data: dict[str, Any], digest: str, dry_run: bool) -> str:
    """What the approvers read: the steps as they would run, the mode and the hash they bind."""
    listed = "\n".join(
        f"{number}. {step.id}: {shlex.join(step.argv)}"
        for number, step in enumerate(manifest.steps(data), start=1)
    )
    mode = "DRY RUN (nothing is executed)" if dry_run else "LIVE (commands are executed)"
    head = (
        f"Run {data['name']} ({len(data['steps'])} step{'s' * (len(data['steps']) != 1)}), "
        f"{mode}. Manifest sha256 {manifest.short(digest)}, job {job_id.hex[:8]}."
    )
    limit = max_length(ApprovalRequest, "text")
    return Truncator(f"{head}\n{listed}").chars(limit)


def submit(
    *,
    manifest_data: Any,
    actor: Actor,
    live: bool = False,
    agent_id: str = "",
    created: Callable[[Job], None] | None = None,
) -> Job:
    """Create a job for ``manifest_data`` and the approval request that binds its hash.

    An invalid manifest raises ``InvalidInput`` with every problem; a step outside the allowlist
    raises ``CommandNotAllowed``, audited as ``job.refused``. Nothing is saved in either case.
    Nothing runs before the request is approved. ``created`` is called with the new job inside
    its transaction, so what a channel attaches to it (a callback URL) commits with it or not at
    all; the refusal's audit event is committed on its own, so no caller may wrap this in one.
    """
    fields = manifest.problems(manifest_data)
    user = actor.authenticated_user
    if user is None or not user.is_active:
        fields["user"] = "a job is submitted by an active user; name one"
    if not isinstance(live, bool):
        fields["live"] = "must be true or false"
    if fields or user is None:
        raise InvalidInput(fields)
    digest = manifest.sha256(manifest_data)
    refused = manifest.outside_allowlist(manifest_data)
    if refused:
        with transaction.atomic():
            record(
                "job.refused",
                actor=actor,
                object_type="automation.job",
                details={
                    "name": manifest_data["name"],
                    "manifest_sha256": digest,
                    "steps": refused,
                },
            )
        raise CommandNotAllowed(refused)
    return _create(
        manifest_data, digest, user, actor=actor, live=live, agent_id=agent_id, created=created
    )


@transaction.atomic
def _create(
    data: dict[str, Any],
    digest: str,
    user: User,
    *,
    actor: Actor,
    live: bool,
    agent_id: str,
    created: Callable[[Job], None] | None,
) -> Job:
    job_id = uuid.uuid4()
    dry_run = not (live and settings.AUTOMATION_ALLOW_EXECUTION)
    work_item = data.get("work_item") or {}
    approval = claims.request_approval(
        kind=Kind.COMMAND if len(data["steps"]) == 1 else Kind.MANIFEST,
        text=_request_text(job_id, data, digest, dry_run),
        actor=actor,
        agent_id=agent_id,
        payload={
            "job": str(job_id),
            "name": data["name"],
            "manifest_sha256": digest,
            "manifest_short": manifest.short(digest),
            "dry_run": dry_run,
            "manifest": data,
            **({"story": work_item["story"]} if work_item else {}),
        },
    )
    job = Job.objects.create(
        id=job_id,
        name=data["name"],
        manifest=data,
        manifest_sha256=digest,
        approval=approval,
        submitted_by=user,
        agent_id=approval.agent_id,
        live=live,
        dry_run=dry_run,
        story=work_item.get("story", ""),
        todolist=work_item.get("todolist", ""),
        concurrency=data.get("concurrency", 1),
    )
    JobStep.objects.bulk_create(
        JobStep(
            job=job,
            position=position,
            step_id=step.id,
            idempotency_key=manifest.idempotency_key(job.pk, step),
            argv=step.argv,
            env_names=sorted(step.env),
            timeout=step.timeout,
            retries=step.retries,
            allow_fail=step.allow_fail,
        )
        for position, step in enumerate(manifest.steps(data))
    )
    if created is not None:
        created(job)
    record("job.submitted", actor=actor, obj=job, details=_details(job))
    events.publish(events.JobSubmitted(actor, job))
    return job


# --- Approval -------------------------------------------------------------------------------


def approval_settled(event: claim_events.ApprovalEvent) -> None:
    """Subscriber of the approval events: an approved request queues its job, a denied or
    expired one refuses it. Runs inside the decision's transaction."""
    approval = event.approval
    job = job_for_approval(approval)
    if job is None:
        return
    job = get_job(job.pk, lock=True)
    if job.status != Status.AWAITING_APPROVAL:
        return
    actor = event.actor
    if approval.status == Approval.APPROVED:
        job.status = Status.QUEUED
        job.approved_at = timezone.now()
        job.save(update_fields=["status", "approved_at", "updated_at"])
        record("job.queued", actor=actor, obj=job, details=_details(job))
        events.publish(events.JobQueued(actor, job))
        queue_run()
    elif approval.status in (Approval.DENIED, Approval.EXPIRED):
        _end(job, Status.REFUSED, f"The approval request was {approval.status}.", actor=actor)


# --- Running (called by the runner) ----------------------------------------------------------


def _serialize_starts() -> None:
    """Let one worker at a time choose a job, so the concurrency limits hold across machines.

    SQLite transactions here are IMMEDIATE and so already one at a time.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('claimdesk.automation.start'))")


def _refusal(job: Job) -> str:
    """Why ``job`` may not run now, or "": the exact approved bytes, an approval in force, and
    every executable still on the allowlist."""
    digest = manifest.sha256(job.manifest)
    approved = job.approval.payload.get("manifest_sha256")
    if digest != job.manifest_sha256 or digest != approved:
        return (
            f"The manifest's sha256 is {manifest.short(digest)}, the approved one "
            f"{manifest.short(str(approved))}: it changed after approval; submit it again."
        )
    if job.approval.status not in (Approval.APPROVED, Approval.EXECUTED):
        return f"The approval request is {job.approval.status}."
    keys = [manifest.idempotency_key(job.pk, step) for step in manifest.steps(job.manifest)]
    if keys != [step.idempotency_key for step in job.steps.all()]:
        return "The job's steps differ from the approved manifest."
    refused = manifest.outside_allowlist(job.manifest)
    if refused:
        return "; ".join(f"{where}: {why}" for where, why in refused.items())
    return ""


@transaction.atomic
def take_next(worker: str) -> Job | None:
    """Start the queued job approved first that fits the limits, as ``worker``; None if none.

    ``AUTOMATION_MAX_CONCURRENT_JOBS`` bounds the jobs running at once, a manifest's
    ``concurrency`` those of its name. A job whose approved bytes or allowlist no longer hold is
    refused here, audited, and the next one is looked at.
    """
    _serialize_starts()
    running = list(Job.objects.filter(status=Status.RUNNING).values_list("name", flat=True))
    if len(running) >= settings.AUTOMATION_MAX_CONCURRENT_JOBS:
        return None
    queued = Job.objects.select_related("approval", "submitted_by").filter(status=Status.QUEUED)
    for job in queued.order_by("approved_at", "created_at")[:100]:
        if running.count(job.name) >= job.concurrency:
            continue
        actor = runner_actor(job)
        refusal = _refusal(job)
        if refusal:
            _end(job, Status.REFUSED, refusal, actor=actor)
            continue
        now = timezone.now()
        job.status = Status.RUNNING
        job.worker = worker
        job.heartbeat_at = now
        job.runs += 1
        job.started_at = job.started_at or now
        job.reason = ""
        job.save()
        record("job.started", actor=actor, obj=job, details=_details(job))
        if job.dry_run:
            record("job.dry_run", actor=actor, obj=job, details=_details(job))
        events.publish(events.JobStarted(actor, job))
        return job
    return None


def _mine(job: Job, worker: str) -> Job:
    """The job's row, locked, if ``worker`` still runs it; else ``LostJob``."""
    current = get_job(job.pk, lock=True)
    if current.status != Status.RUNNING or current.worker != worker:
        raise LostJob(str(job.pk))
    return current


def heartbeat(job: Job, worker: str) -> bool:
    """Say the worker is alive; False once it no longer runs the job."""
    return bool(
        Job.objects.filter(pk=job.pk, status=Status.RUNNING, worker=worker).update(
            heartbeat_at=timezone.now()
        )
    )


def cancel_requested(job: Job) -> bool:
    return Job.objects.filter(pk=job.pk, cancel_requested=True).exists()


@transaction.atomic
def hold_lease(job: Job, worker: str, fencing_token: int) -> None:
    """Remember the fencing token of the lease the job holds on its work item."""
    current = _mine(job, worker)
    current.fencing_token = fencing_token
    current.save(update_fields=["fencing_token", "updated_at"])
    job.fencing_token = fencing_token


@transaction.atomic
def wait_for_work_item(job: Job, worker: str, reason: str) -> None:
    """Give the job back to the queue: its work item is held by someone else for now."""
    current = _mine(job, worker)
    current.status = Status.QUEUED
    current.worker = ""
    current.reason = reason
    current.save(update_fields=["status", "worker", "reason", "updated_at"])
    record("job.waiting", actor=runner_actor(current), obj=current, details=_details(current))


@transaction.atomic
def step_started(job: Job, step: JobStep, worker: str, *, dry_run: bool) -> JobStep:
    _mine(job, worker)
    step.status = StepStatus.RUNNING
    step.attempts += 1
    step.dry_run = dry_run
    step.started_at = timezone.now()
    step.finished_at = step.returncode = step.duration_ms = step.pid = None
    step.timed_out = False
    step.save()
    record(
        "job.step.started",
        actor=runner_actor(job),
        obj=job,
        details={"step": step_data(step, output=False)},
    )
    return step


def step_pid(step: JobStep, pid: int) -> None:
    """Note the process id of the running step (staff look at it; a test checks it is gone)."""
    JobStep.objects.filter(pk=step.pk).update(pid=pid)


@transaction.atomic
def step_finished(
    job: Job,
    step: JobStep,
    worker: str,
    *,
    returncode: int,
    stdout: str,
    stderr: str,
    duration_ms: int,
    timed_out: bool = False,
    cancelled: bool = False,
) -> JobStep:
    _mine(job, worker)
    step.returncode = returncode
    step.stdout, step.stderr = stdout, stderr
    step.duration_ms = duration_ms
    step.timed_out = timed_out
    step.finished_at = timezone.now()
    if cancelled:
        step.status = StepStatus.CANCELLED
    else:
        step.status = StepStatus.SUCCEEDED if returncode == 0 else StepStatus.FAILED
    step.save()
    record(
        "job.step.finished",
        actor=runner_actor(job),
        obj=job,
        details={"step": step_data(step, output=False)},
    )
    return step


def finish(job: Job, worker: str, status: str, reason: str = "") -> Job:
    """End the job the runner ran (succeeded, failed or cancelled)."""
    with transaction.atomic():
        current = _mine(job, worker)
        _end(current, status, reason, actor=runner_actor(current))
        return current


def _end(job: Job, status: str, reason: str, *, actor: Actor) -> None:
    """End ``job`` with ``status``: audited, its approval request moved to executed (when it
    was approved: ``mark_executed`` is the only way there) and ``JobEnded`` published. Inside
    the caller's transaction, the job's row locked.
    """
    job.status = status
    job.reason = reason
    job.worker = ""
    job.finished_at = timezone.now()
    job.save()
    JobStep.objects.filter(job=job, status=StepStatus.RUNNING).update(
        status=StepStatus.CANCELLED, pid=None
    )
    record(END_ACTIONS[Status(status)], actor=actor, obj=job, details=_details(job))
    approval = claims.get_approval(job.approval_id, lock=True)
    executed = approval.status == Approval.APPROVED
    if executed:
        claims.mark_executed(approval.pk, actor=actor)
    job.approval = approval
    events.publish(events.JobEnded(actor, job, request_executed=executed))


# --- Cancel, re-run, resume -----------------------------------------------------------------


def _may_cancel(job: Job, actor: Actor) -> bool:
    user = actor.authenticated_user
    return actor.has_perm(CANCEL_PERMISSION) or (user is not None and user == job.submitted_by)


@transaction.atomic
def cancel(job_id: object, *, actor: Actor) -> tuple[Job, bool]:
    """Cancel a job not yet ended: at once when it waits, by its worker (which kills the step's
    process group) when it runs. Its submitter or staff with the permission; cancelling twice
    changes nothing."""
    job = get_job(job_id, lock=True)
    if not _may_cancel(job, actor):
        raise NotPermitted(f"{actor.name} may not cancel job {job.short_id}.")
    if job.status == Status.CANCELLED or (job.status == Status.RUNNING and job.cancel_requested):
        return job, False
    if job.ended:
        raise InvalidTransition(
            f"Job {job.short_id} is {job.status}; only a job not yet ended can be cancelled.",
            status=job.status,
        )
    if job.status == Status.RUNNING:
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested", "updated_at"])
        record("job.cancel_requested", actor=actor, obj=job, details=_details(job))
    else:
        _end(job, Status.CANCELLED, f"Cancelled by {actor.name}.", actor=actor)
    return job, True


@transaction.atomic
def rerun(job_id: object, *, actor: Actor) -> Job:
    """Run a failed or cancelled job again from its first step that did not succeed.

    No new approval is needed as long as the manifest's hash is the approved one and the request
    is not archived; otherwise submit the manifest again.
    """
    if not actor.has_perm(RERUN_PERMISSION):
        raise NotPermitted(f"{actor.name} may not re-run jobs.")
    job = get_job(job_id, lock=True)
    if job.status not in (Status.FAILED, Status.CANCELLED):
        raise InvalidTransition(
            f"Job {job.short_id} is {job.status}; only a failed or cancelled job can be re-run.",
            status=job.status,
        )
    approval = claims.get_approval(job.approval_id, lock=True)
    job.approval = approval
    refusal = _refusal(job)
    if refusal:
        raise InvalidTransition(
            f"Job {job.short_id} needs a new approval: {refusal}", status=approval.status
        )
    steps = list(job.steps.all())
    first = next(
        (
            step.position
            for step in steps
            if step.status != StepStatus.SUCCEEDED
            and not (step.status == StepStatus.FAILED and step.allow_fail)
        ),
        len(steps),
    )
    JobStep.objects.filter(job=job, position__gte=first).update(
        status=StepStatus.PENDING, attempts=0, pid=None
    )
    job.status = Status.QUEUED
    job.cancel_requested = False
    job.reason = ""
    job.finished_at = None
    job.save()
    record("job.rerun", actor=actor, obj=job, details=_details(job, from_position=first))
    events.publish(events.JobQueued(actor, job))
    queue_run()
    return job


def resume_stalled(*, now: datetime | None = None) -> list[Job]:
    """Give every job whose worker died back to the queue, at its first unfinished step.

    A step that was running is marked interrupted and runs again only if its retries allow
    (at-least-once for that step); with none left the job fails (or, with ``allow_fail``, goes
    on). A stalled job asked to cancel ends cancelled. Each job is its own transaction.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AUTOMATION_HEARTBEAT_TIMEOUT)
    resumed = []
    for job_id in stalled_jobs(cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            job = get_job(job_id, lock=True)
            if (
                job.status != Status.RUNNING
                or job.heartbeat_at is None
                or job.heartbeat_at >= cutoff
            ):
                continue
            actor = Actor(source=Source.SYSTEM, label="automation.resume")
            if job.cancel_requested:
                _end(job, Status.CANCELLED, "Cancelled while its worker was lost.", actor=actor)
                continue
            failure = _interrupt_steps(job, actor)
            if failure:
                _end(job, Status.FAILED, failure, actor=actor)
                continue
            job.status = Status.QUEUED
            job.worker = ""
            job.save(update_fields=["status", "worker", "updated_at"])
            record("job.resumed", actor=actor, obj=job, details=_details(job))
            events.publish(events.JobQueued(actor, job))
            queue_run()
            resumed.append(job)
    return resumed


def _interrupt_steps(job: Job, actor: Actor) -> str:
    """Mark the running steps interrupted; why the job fails, if one has no retry left."""
    for step in job.steps.filter(status=StepStatus.RUNNING):
        step.status = StepStatus.INTERRUPTED
        step.pid = None
        step.finished_at = timezone.now()
        if not step.attempts_left and step.allow_fail:
            step.status = StepStatus.FAILED
        step.save()
        record(
            "job.step.interrupted",
            actor=actor,
            obj=job,
            details={"step": step_data(step, output=False)},
        )
        if step.status == StepStatus.INTERRUPTED and not step.attempts_left:
            return f"Step {step.step_id} was interrupted (worker lost) with no retry left."
    return ""


def queue_waiting() -> int:
    """Ask for a run of each queued job, up to the global limit (jobs left waiting on a busy work
    item or a full runner come back this way); how many runs were asked for."""
    waiting = min(
        Job.objects.filter(status=Status.QUEUED).count(), settings.AUTOMATION_MAX_CONCURRENT_JOBS
    )
    for _ in range(waiting):
        queues.queue(RUN_TASK, queue_name=settings.AUTOMATION_QUEUE)
    return waiting
