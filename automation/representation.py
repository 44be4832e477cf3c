"""How a job looks outside the domain: one shape for the API, the ``jobs`` command and the audit
trail (which keeps the job without its steps' output)."""

from typing import Any

from backoffice.timestamps import iso_utc

from .models import Job, JobStep


def step_data(step: JobStep, *, output: bool = True) -> dict[str, Any]:
    """One step as it would run (argv, env names, timeout) and what became of it."""
    data = {
        "id": step.step_id,
        "position": step.position,
        "status": step.status,
        "argv": step.argv,
        "env_names": step.env_names,
        "timeout": step.timeout,
        "retries": step.retries,
        "allow_fail": step.allow_fail,
        "attempts": step.attempts,
        "returncode": step.returncode,
        "timed_out": step.timed_out,
        "dry_run": step.dry_run,
        "duration_ms": step.duration_ms,
        "started_at": iso_utc(step.started_at),
        "finished_at": iso_utc(step.finished_at),
        "idempotency_key": step.idempotency_key,
    }
    if output:
        data.update(stdout=step.stdout, stderr=step.stderr)
    return data


def job_data(job: Job, *, steps: bool = True) -> dict[str, Any]:
    """A job: what was approved (name, hash, manifest), how it runs (dry run or live) and how far
    it got."""
    data: dict[str, Any] = {
        "id": str(job.pk),
        "short_id": job.short_id,
        "name": job.name,
        "status": job.status,
        "mode": "dry_run" if job.dry_run else "live",
        "dry_run": job.dry_run,
        "live": job.live,
        "manifest_sha256": job.manifest_sha256,
        "manifest_short": job.short_hash,
        "approval": str(job.approval_id),
        "approval_status": job.approval.status,
        "submitted_by": job.submitted_by.get_username(),
        "agent_id": job.agent_id,
        "work_item": {"story": job.story, "todolist": job.todolist} if job.story else None,
        "fencing_token": job.fencing_token,
        "concurrency": job.concurrency,
        "reason": job.reason,
        "runs": job.runs,
        "cancel_requested": job.cancel_requested,
        "worker": job.worker,
        "approved_at": iso_utc(job.approved_at),
        "started_at": iso_utc(job.started_at),
        "finished_at": iso_utc(job.finished_at),
        "created_at": iso_utc(job.created_at),
        "updated_at": iso_utc(job.updated_at),
        "manifest": job.manifest,
    }
    if steps:
        data["steps"] = [step_data(step) for step in job.steps.all()]
    return data
