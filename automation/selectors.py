"""Reading jobs."""

import uuid
from datetime import datetime

from django.db.models import QuerySet

from backoffice.errors import InvalidInput, NotFound
from claims.models import ApprovalRequest
from claims.selectors import id_prefix

from .models import Job


def jobs() -> QuerySet[Job]:
    """Every job, newest first, with what their representation reads."""
    return (
        Job.objects.select_related("approval", "submitted_by")
        .prefetch_related("steps")
        .order_by("-created_at")
    )


def get_job(job_id: object, *, lock: bool = False) -> Job:
    """The job with this full id, or the one job whose id starts with these hex digits."""
    queryset = Job.objects.select_for_update() if lock else Job.objects
    try:
        return queryset.get(pk=uuid.UUID(str(job_id)))
    except (Job.DoesNotExist, ValueError, TypeError):
        pass
    prefix = id_prefix(str(job_id))
    if prefix is None or len(prefix) >= 32:
        raise NotFound(f"No job with id {job_id}.")
    lowest = uuid.UUID(prefix.ljust(32, "0"))
    highest = uuid.UUID(prefix.ljust(32, "f"))
    matches = list(queryset.filter(pk__gte=lowest, pk__lte=highest)[:2])
    if not matches:
        raise NotFound(f"No job with an id starting {prefix}.")
    if len(matches) > 1:
        raise InvalidInput({"id": f"{prefix} matches more than one job; give more characters"})
    return matches[0]


def job_for_approval(approval: ApprovalRequest) -> Job | None:
    """The job an approval request was created for, if it was.

    A job's request names the job in its payload (``services._create``), so any other request
    (the approve path's common case) costs no query. The answer is kept on ``approval``, so the
    subscribers that ask in one transaction (the runner's, the message's) share one query.
    """
    if not isinstance(approval.payload, dict) or "job" not in approval.payload:
        return None
    try:
        return approval.job
    except Job.DoesNotExist:
        return None


def stalled_jobs(cutoff: datetime) -> QuerySet[Job]:
    """Running jobs whose worker has said nothing since ``cutoff``: it died or was cut off."""
    return Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff)
