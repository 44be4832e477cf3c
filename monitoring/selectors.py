"""The figures metrics and alerts read, each one aggregate query over indexed columns.

Outbox and inbound figures come from the bridge's own lookups (``telegram_bridge.outbox``,
``telegram_bridge.inbound``); claims, approval requests and audit events are read here. Counts
grouped by an indexed column count ``*``, not ``id``, so PostgreSQL can answer from the index
alone. Nothing is
kept in memory between calls, so every process (web, worker, ``manage.py``) sees the same numbers:
the database is the one place they live.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.fields.json import KT

from audit.models import AuditEvent
from automation.models import Job, JobStep
from claims.models import ApprovalRequest, Claim, ClaimWaiter

# Audit actions that decide an approval request, and the decision each stands for.
DECISION_ACTIONS = {
    "approval.approved": "approved",
    "approval.denied": "denied",
    "approval.postponed": "postponed",
    "approval.reopened": "reopened",
    "approval.expired": "expired",
    "approval.approved_by_default": "approved",
    "approval.denied_by_default": "denied",
}
# Audit actions of leases, counted by action (a claimer refused for a wrong token or a stale
# fence is ``claim.refused``; one turned away with 409 because the lease is held is
# ``claim.conflict``).
CLAIM_ACTIONS = (
    "claim.acquired",
    "claim.refreshed",
    "claim.taken_over",
    "claim.released",
    "claim.force_released",
    "claim.refused",
    "claim.conflict",
    "claim.frozen",
    "claim.unfrozen",
)
REQUEUE_ACTION = "telegram.requeued"
# Upper bounds, in seconds, of the time-to-decision histogram: a minute to a week.
DECISION_TIME_BUCKETS = (60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)
# Upper bounds, in seconds, of the job step duration histogram: a second to an hour.
STEP_DURATION_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def audit_counts(actions: Iterable[str], *by: str) -> dict[tuple[str, ...], int]:
    """Audit events of ``actions`` counted by ``action`` and the columns ``by``."""
    rows = (
        AuditEvent.objects.filter(action__in=list(actions))
        .values("action", *by)
        .annotate(n=Count("*"))
        .order_by()
    )
    return {(row["action"], *(row[name] for name in by)): row["n"] for row in rows}


def decisions() -> dict[tuple[str, str, str], int]:
    """Decisions on approval requests by (decision, source, kind), from their audit events."""
    rows = (
        AuditEvent.objects.filter(action__in=list(DECISION_ACTIONS))
        .values("action", "source", kind=KT("details__kind"))
        .annotate(n=Count("id"))
        .order_by()
    )
    counted: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (DECISION_ACTIONS[row["action"]], row["source"], row["kind"] or "")
        counted[key] = counted.get(key, 0) + row["n"]
    return counted


def requests_by_kind() -> dict[str, int]:
    """Approval requests ever made, by kind."""
    rows = ApprovalRequest.objects.values("kind").annotate(n=Count("*")).order_by()
    return {row["kind"]: row["n"] for row in rows}


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per upper bound (in seconds), the count and the sum in seconds."""

    buckets: list[tuple[float, int]]
    count: int
    total_seconds: float


def decision_times() -> Histogram:
    """How long decided requests waited for their decision (by a person or by default)."""
    took = ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())
    decided = ApprovalRequest.objects.filter(decided_at__isnull=False).annotate(took=took)
    found = decided.aggregate(
        count=Count("id"),
        total=Sum("took"),
        **{
            f"le_{index}": Count("id", filter=Q(took__lte=timedelta(seconds=bound)))
            for index, bound in enumerate(DECISION_TIME_BUCKETS)
        },
    )
    total = found["total"]
    return Histogram(
        buckets=[
            (bound, found[f"le_{index}"]) for index, bound in enumerate(DECISION_TIME_BUCKETS)
        ],
        count=found["count"],
        total_seconds=total.total_seconds() if total else 0.0,
    )


def jobs_by_status() -> dict[str, int]:
    """Jobs by status, every status present (0 when none): running ones and each outcome."""
    rows = Job.objects.values("status").annotate(n=Count("*")).order_by()
    counted = {row["status"]: row["n"] for row in rows}
    return {status: counted.get(status, 0) for status in Job.Status.values}


def step_durations() -> dict[str, Histogram]:
    """How long job steps that ran to an end took, by the step's status; one grouped query."""
    rows = (
        JobStep.objects.filter(duration_ms__isnull=False)
        .values("status")
        .annotate(
            count=Count("*"),
            total_ms=Sum("duration_ms"),
            **{
                f"le_{index}": Count("id", filter=Q(duration_ms__lte=bound * 1000))
                for index, bound in enumerate(STEP_DURATION_BUCKETS)
            },
        )
        .order_by()
    )
    found: dict[str, Histogram] = {}
    for row in rows:
        counted: dict[str, Any] = dict(row)
        found[counted["status"]] = Histogram(
            buckets=[
                (bound, counted[f"le_{index}"]) for index, bound in enumerate(STEP_DURATION_BUCKETS)
            ],
            count=counted["count"],
            total_seconds=(counted["total_ms"] or 0) / 1000,
        )
    return found


def claims_by_state(now: datetime) -> dict[str, int]:
    """Leases held now (``live``), run out without a release (``expired``), ``released``."""
    found = Claim.objects.aggregate(
        live=Count("id", filter=Q(released_at__isnull=True, expires_at__gt=now)),
        expired=Count("id", filter=Q(released_at__isnull=True, expires_at__lte=now)),
        released=Count("id", filter=Q(released_at__isnull=False)),
    )
    return {state: found[state] for state in ("live", "expired", "released")}


def claim_waiters() -> int:
    """Claimers waiting in line for a busy work item: the contention right now."""
    return ClaimWaiter.objects.count()


def overdue_approvals(now: datetime) -> int:
    """Requests still awaiting a decision after their policy's first reminder time."""
    return (
        ApprovalRequest.objects.filter(status__in=ApprovalRequest.AWAITING_DECISION)
        .filter(Q(reminders_sent__gt=0) | Q(next_reminder_at__lte=now))
        .count()
    )


def pending_approvals() -> int:
    """Requests awaiting a decision."""
    return ApprovalRequest.objects.filter(status__in=ApprovalRequest.AWAITING_DECISION).count()
