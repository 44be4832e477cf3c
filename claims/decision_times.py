"""How long requests wait for a person's decision: p50 and p90 per kind, over a recent window.

Shown on the admin's list of approval requests so a team sees whether its policies (quorums,
reminders, escalation) get requests decided in time. Only decisions taken by people count: a
default outcome at the deadline says nobody decided.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import quantiles

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, QuerySet, Value
from django.db.models.functions import Extract, Greatest
from django.utils import timezone

from .models import ApprovalRequest

WINDOWS_DAYS = (7, 30)


@dataclass(frozen=True)
class DecisionTimes:
    kind: str
    label: str
    days: int
    count: int
    p50: timedelta
    p90: timedelta


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    if len(seconds) == 1:
        return seconds[0], seconds[0]
    cuts = quantiles(seconds, n=10, method="inclusive")
    return cuts[4], cuts[8]


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont``: the same interpolation as ``quantiles(inclusive)``."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=fraction, **extra)


def _decided(days: int, now: datetime | None) -> QuerySet[ApprovalRequest]:
    since = (now or timezone.now()) - timedelta(days=days)
    return (
        ApprovalRequest.objects.filter(decided_at__gte=since)
        .exclude(status__in=ApprovalRequest.AWAITING_DECISION)
        .exclude(decision_source=ApprovalRequest.DecisionSource.DEFAULT)
    )


def _in_database(decided: QuerySet[ApprovalRequest]) -> dict[str, tuple[int, float, float]]:
    """Count, p50 and p90 seconds per kind, computed by PostgreSQL: one row per kind comes back,
    not one per request (a hundred thousand decisions would take a second in Python)."""
    seconds = Greatest(Extract(F("decided_at") - F("created_at"), "epoch"), Value(0.0))
    rows = (
        decided.order_by()
        .values("kind")
        .annotate(n=Count("pk"), p50=Percentile(seconds, 0.5), p90=Percentile(seconds, 0.9))
    )
    return {row["kind"]: (row["n"], row["p50"], row["p90"]) for row in rows}


def _in_python(decided: QuerySet[ApprovalRequest]) -> dict[str, tuple[int, float, float]]:
    waited = decided.annotate(waited=F("decided_at") - F("created_at")).values_list(
        "kind", "waited"
    )
    by_kind: defaultdict[str, list[float]] = defaultdict(list)
    for kind, duration in waited:
        by_kind[kind].append(max(duration.total_seconds(), 0.0))
    return {kind: (len(values), *_percentiles(sorted(values))) for kind, values in by_kind.items()}


def decision_times(days: int, now: datetime | None = None) -> list[DecisionTimes]:
    """p50 and p90 of the time from request to decision, per kind, for requests decided by a
    person in the last ``days`` days."""
    decided = _decided(days, now)
    by_kind = _in_database(decided) if connection.vendor == "postgresql" else _in_python(decided)
    labels = dict(ApprovalRequest.Kind.choices)
    return [
        DecisionTimes(
            kind=kind,
            label=labels.get(kind, kind),
            days=days,
            count=count,
            p50=timedelta(seconds=round(p50)),
            p90=timedelta(seconds=round(p90)),
        )
        for kind, (count, p50, p90) in sorted(by_kind.items())
    ]
