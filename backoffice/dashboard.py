"""The admin's front page: what the people on call look at first.

The dashboard is a list of panels, one function each. A panel reads through a few bounded queries
(counts and the first rows, never one query per row), so the page costs the same number of
queries with ten requests or a hundred thousand. An app that has something to show adds a function
to ``PANELS``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from audit.models import AuditEvent
from automation.models import Job
from claims import selectors as claim_selectors
from claims import services as claim_services
from claims.models import ApprovalRequest, Claim
from monitoring import heartbeat
from telegram_bridge import dead_letters
from telegram_bridge.models import InboundUpdate, OutboundMessage

ROWS = 8
DEADLINE_SOON = timedelta(hours=4)
LEASE_SOON = timedelta(minutes=5)


@dataclass
class Panel:
    """One box on the dashboard: a title, its template, and what that template shows."""

    key: str
    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)


def _list_panel(key: str, title: str, queryset: QuerySet[Any], **extra: Any) -> Panel:
    """A panel of the first ``ROWS`` rows of ``queryset`` and how many there are: two queries."""
    context = {"rows": list(queryset[:ROWS]), "total": queryset.order_by().count(), **extra}
    return Panel(key, title, f"admin/dashboard/{key}.html", context)


def pending_approvals(request: HttpRequest, now: datetime) -> Panel:
    """The oldest pending requests, and how many wait under an hour, under a day, longer."""
    pending = claim_selectors.pending_approvals()
    ages = pending.order_by().aggregate(
        hour=Count("pk", filter=Q(created_at__gt=now - timedelta(hours=1))),
        day=Count(
            "pk",
            filter=Q(
                created_at__lte=now - timedelta(hours=1), created_at__gt=now - timedelta(days=1)
            ),
        ),
        older=Count("pk", filter=Q(created_at__lte=now - timedelta(days=1))),
    )
    rows = list(pending[:ROWS])
    return Panel(
        "pending",
        "Pending approvals",
        "admin/dashboard/pending.html",
        {
            "rows": rows,
            "total": sum(ages.values()),
            "ages": [
                ("under an hour", ages["hour"]),
                ("1 h to a day", ages["day"]),
                ("over a day", ages["older"]),
            ],
            "may_decide": request.user.has_perm(claim_services.DECIDE_PERMISSION),
        },
    )


def deadlines(request: HttpRequest, now: datetime) -> Panel:
    """Requests still waiting for a decision whose deadline is within ``DEADLINE_SOON``."""
    return _list_panel(
        "deadlines",
        "Close to their deadline",
        ApprovalRequest.objects.filter(
            status__in=ApprovalRequest.AWAITING_DECISION,
            expires_at__gt=now,
            expires_at__lte=now + DEADLINE_SOON,
        ).order_by("expires_at"),
    )


def expiring_leases(request: HttpRequest, now: datetime) -> Panel:
    """Live leases that end within ``LEASE_SOON`` unless their holder refreshes them."""
    return _list_panel(
        "leases",
        "Leases about to expire",
        Claim.objects.live(now).filter(expires_at__lte=now + LEASE_SOON).order_by("expires_at"),
    )


def dead_letter_panel(request: HttpRequest, now: datetime) -> Panel:
    """Dead messages, newest first, each with its Requeue button."""
    return _list_panel(
        "dead_letters",
        "Dead letters",
        OutboundMessage.objects.filter(status=OutboundMessage.Status.DEAD).order_by(
            "-failed_at", "-id"
        ),
        may_requeue=request.user.has_perm(dead_letters.REQUEUE_PERMISSION),
    )


def failed_updates(request: HttpRequest, now: datetime) -> Panel:
    """Inbound updates that failed and wait for a retry."""
    return _list_panel(
        "failed_updates",
        "Failed inbound updates",
        InboundUpdate.objects.filter(status=InboundUpdate.Status.FAILED).order_by("-received_at"),
    )


def jobs(request: HttpRequest, now: datetime) -> Panel:
    """Jobs running now and the latest that failed, each linked to its page: three queries (one
    count of both over the indexed status, and the first rows of each)."""
    totals = Job.objects.filter(status__in=[Job.Status.RUNNING, Job.Status.FAILED]).aggregate(
        running=Count("pk", filter=Q(status=Job.Status.RUNNING)),
        failed=Count("pk", filter=Q(status=Job.Status.FAILED)),
    )
    running = Job.objects.filter(status=Job.Status.RUNNING).order_by("started_at")
    failed = Job.objects.filter(status=Job.Status.FAILED).order_by("-finished_at", "-created_at")
    return Panel(
        "jobs",
        "Jobs running and failed",
        "admin/dashboard/jobs.html",
        {
            "running": list(running[:ROWS]),
            "rows": list(failed[:ROWS]),
            "running_total": totals["running"],
            "total": totals["failed"],
        },
    )


def worker_heartbeat(request: HttpRequest, now: datetime) -> Panel:
    """When a worker last beat: red once it is older than ``WORKER_HEARTBEAT_MAX_AGE`` seconds,
    the same limit /readyz and the worker alert use."""
    last = heartbeat.last_beat()
    age = None if last is None else max((now - last).total_seconds(), 0.0)
    limit = settings.WORKER_HEARTBEAT_MAX_AGE
    return Panel(
        "heartbeat",
        "Worker heartbeat",
        "admin/dashboard/heartbeat.html",
        {"last": last, "age": age, "limit": limit, "ok": age is not None and age <= limit},
    )


@dataclass
class Series:
    """Failure and retry rates of outgoing messages per bucket, drawn as an SVG line chart."""

    title: str
    labels: list[str]
    failed: list[float]
    retried: list[float]
    sent: int

    WIDTH = 360
    HEIGHT = 120

    def points(self, values: list[float]) -> str:
        step = self.WIDTH / max(len(values) - 1, 1)
        return " ".join(
            f"{index * step:.1f},{self.HEIGHT * (1 - value):.1f}"
            for index, value in enumerate(values)
        )

    @property
    def failed_points(self) -> str:
        return self.points(self.failed)

    @property
    def retried_points(self) -> str:
        return self.points(self.retried)

    @property
    def peak(self) -> str:
        return f"{max([*self.failed, *self.retried, 0.0]):.0%}"


def _rates(title: str, now: datetime, buckets: int, unit: timedelta, trunc: Any) -> Series:
    """One aggregate query: messages queued per bucket, and the share that failed or retried."""
    daily = unit >= timedelta(days=1)
    since = (timezone.localtime(now) - unit * (buckets - 1)).replace(
        minute=0, second=0, microsecond=0
    )
    if daily:
        since = since.replace(hour=0)
    rows = (
        OutboundMessage.objects.filter(created_at__gte=since)
        .annotate(bucket=trunc("created_at"))
        .values("bucket")
        .annotate(
            total=Count("pk"),
            failed=Count("pk", filter=Q(status__in=dead_letters.REQUEUABLE)),
            retried=Count("pk", filter=Q(attempts__gt=1) | Q(requeues__gt=0)),
        )
        .order_by("bucket")
    )
    by_bucket = {
        timezone.localtime(row["bucket"]).replace(tzinfo=None): row for row in rows.iterator()
    }
    labels, failed, retried, sent = [], [], [], 0
    for index in range(buckets):
        moment = timezone.localtime(since + unit * index).replace(tzinfo=None)
        row = by_bucket.get(moment, {"total": 0, "failed": 0, "retried": 0})
        sent += row["total"]
        labels.append(moment.strftime("%a %d" if daily else "%H:00"))
        failed.append(row["failed"] / row["total"] if row["total"] else 0.0)
        retried.append(row["retried"] / row["total"] if row["total"] else 0.0)
    return Series(title, labels, failed, retried, sent)


def delivery_rates(request: HttpRequest, now: datetime) -> Panel:
    """Failure and retry rates of Telegram delivery over the last 24 hours and 7 days."""
    return Panel(
        "rates",
        "Telegram delivery: failure and retry rates",
        "admin/dashboard/rates.html",
        {
            "charts": [
                _rates("Last 24 hours, by hour", now, 24, timedelta(hours=1), TruncHour),
                _rates("Last 7 days, by day", now, 7, timedelta(days=1), TruncDay),
            ]
        },
    )


PANELS: list[Callable[[HttpRequest, datetime], Panel]] = [
    pending_approvals,
    deadlines,
    expiring_leases,
    dead_letter_panel,
    failed_updates,
    jobs,
    worker_heartbeat,
    delivery_rates,
]


def recent_events() -> list[AuditEvent]:
    """Claimdesk's own audit trail, for the "Recent actions" box."""
    return list(AuditEvent.objects.select_related("actor").order_by("-timestamp", "-id")[:ROWS])


def index(request: HttpRequest) -> HttpResponse:
    """The admin index with the dashboard's panels above the list of apps."""
    now = timezone.now()
    return admin.site.index(
        request,
        extra_context={
            "panels": [panel(request, now) for panel in PANELS],
            "recent_events": recent_events(),
        },
    )
