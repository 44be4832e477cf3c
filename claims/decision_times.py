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
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Value
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


def _decided(days: int, now: datetime) -> QuerySet[ApprovalRequest]:
    return (
        ApprovalRequest.objects.filter(decided_at__gte=now - timedelta(days=days))
        .exclude(status__in=ApprovalRequest.AWAITING_DECISION)
        .exclude(decision_source=ApprovalRequest.DecisionSource.DEFAULT)
    )


Stats = dict[int, dict[str, tuple[int, float, float]]]


def _in_database(now: datetime) -> Stats:
    """Count, p50 and p90 seconds per window and kind, computed by PostgreSQL in one query: one
    row per kind comes back, not one per request (100,000 decisions take a second in Python)."""
    seconds = Greatest(Extract(F("decided_at") - F("created_at"), "epoch"), Value(0.0))
    aggregates: dict[str, Aggregate] = {}
    for days in WINDOWS_DAYS:
        recent = Q(decided_at__gte=now - timedelta(days=days))
        aggregates |= {
            f"n{days}": Count("pk", filter=recent),
            f"p50_{days}": Percentile(seconds, 0.5, filter=recent),
            f"p90_{days}": Percentile(seconds, 0.9, filter=recent),
        }
    query = _decided(max(WINDOWS_DAYS), now).order_by().values("kind").annotate(**aggregates)
    rows = [dict[str, Any](row) for row in query]
    return {
        days: {
            row["kind"]: (row[f"n{days}"], row[f"p50_{days}"], row[f"p90_{days}"])
            for row in rows
            if row[f"n{days}"]
        }
        for days in WINDOWS_DAYS
    }


def _in_python(now: datetime) -> Stats:
    stats: Stats = {}
    for days in WINDOWS_DAYS:
        waited = _decided(days, now).annotate(waited=F("decided_at") - F("created_at"))
        by_kind: defaultdict[str, list[float]] = defaultdict(list)
        for kind, duration in waited.values_list("kind", "waited"):
            by_kind[kind].append(max(duration.total_seconds(), 0.0))
        stats[days] = {
            kind: (len(values), *_percentiles(sorted(values))) for kind, values in by_kind.items()
        }
    return stats


def decision_windows(now: datetime | None = None) -> list[tuple[int, list[DecisionTimes]]]:
    """For each of ``WINDOWS_DAYS``: p50 and p90 of the time from request to decision, per kind,
    for requests decided by a person in the last that many days."""
    now = now or timezone.now()
    stats = _in_database(now) if connection.vendor == "postgresql" else _in_python(now)
    labels = dict(ApprovalRequest.Kind.choices)
    return [
        (
            days,
            [
                DecisionTimes(
                    kind=kind,
                    label=labels.get(kind, kind),
                    days=days,
                    count=count,
                    p50=timedelta(seconds=round(p50)),
                    p90=timedelta(seconds=round(p90)),
                )
                for kind, (count, p50, p90) in sorted(stats[days].items())
            ],
        )
        for days in WINDOWS_DAYS
    ]
