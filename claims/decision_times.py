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

from django.db.models import F
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


def decision_times(days: int, now: datetime | None = None) -> list[DecisionTimes]:
    """p50 and p90 of the time from request to decision, per kind, for requests decided by a
    person in the last ``days`` days."""
    since = (now or timezone.now()) - timedelta(days=days)
    waited = (
        ApprovalRequest.objects.filter(decided_at__gte=since)
        .exclude(status__in=ApprovalRequest.AWAITING_DECISION)
        .exclude(decision_source=ApprovalRequest.DecisionSource.DEFAULT)
        .annotate(waited=F("decided_at") - F("created_at"))
        .values_list("kind", "waited")
    )
    by_kind: defaultdict[str, list[float]] = defaultdict(list)
    for kind, duration in waited:
        by_kind[kind].append(max(duration.total_seconds(), 0.0))
    labels = dict(ApprovalRequest.Kind.choices)
    rows = []
    for kind in sorted(by_kind):
        p50, p90 = _percentiles(sorted(by_kind[kind]))
        rows.append(
            DecisionTimes(
                kind=kind,
                label=labels.get(kind, kind),
                days=days,
                count=len(by_kind[kind]),
                p50=timedelta(seconds=round(p50)),
                p90=timedelta(seconds=round(p90)),
            )
        )
    return rows
