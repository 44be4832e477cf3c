"""The Prometheus metrics, computed from the database at scrape time.

``ClaimdeskCollector`` runs one aggregate query per figure on every scrape (see
docs/monitoring.md for why this rather than in-process counters): a delivery made by a worker, a
decision taken in ``manage.py``, an update stored by the poller all show in the web process's
``/metrics`` with no multiprocess directory to manage. Each section is a function yielding
metric families; a new app adds one function to ``SECTIONS``.
"""

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta

from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from telegram_bridge import inbound, outbox
from telegram_bridge.models import OutboundMessage

from . import heartbeat, selectors

PREFIX = "claimdesk"
Section = Callable[[datetime], Iterator[Metric]]


def by_label(
    family: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    label: str,
    counts: Mapping[str, float],
) -> Metric:
    """A metric family with one sample per ``label`` value of ``counts``."""
    metric = family(f"{PREFIX}_{name}", documentation, labels=[label])
    for labelled, count in counts.items():
        metric.add_metric([labelled], count)
    return metric


def add_histogram(
    family: HistogramMetricFamily, labels: list[str], found: selectors.Histogram
) -> None:
    """One labelled sample of ``family`` from a histogram the selectors counted."""
    family.add_metric(
        labels,
        buckets=[*((str(bound), count) for bound, count in found.buckets), ("+Inf", found.count)],
        sum_value=found.total_seconds,
    )


def outbox_metrics(now: datetime) -> Iterator[Metric]:
    counts = outbox.status_counts()
    yield by_label(
        GaugeMetricFamily,
        "outbox_messages",
        "Outbox messages by status (queued, sending, sent, failed: will retry, dead).",
        "status",
        counts,
    )
    yield CounterMetricFamily(
        f"{PREFIX}_outbox_sent",
        "Outbox messages Telegram accepted.",
        value=counts[OutboundMessage.Status.SENT],
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_outbox_failed_attempts",
        "Failed delivery attempts recorded on the messages (a requeue starts afresh).",
        value=outbox.failed_attempts(),
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_outbox_failed_attempts_last_hour",
        "Failed delivery attempts of messages whose latest failure was in the last hour.",
        value=outbox.failed_attempts(since=now - timedelta(hours=1)),
    )
    requeues = selectors.audit_counts([selectors.REQUEUE_ACTION], "source")
    yield by_label(
        CounterMetricFamily,
        "outbox_requeued",
        "Dead or failed messages given another round, by who did it (audit events).",
        "source",
        {source: count for (_, source), count in requeues.items()},
    )
    depth, oldest = outbox.backlog(now)
    yield GaugeMetricFamily(
        f"{PREFIX}_outbox_queue_depth", "Messages due for delivery now.", value=depth
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_outbox_oldest_due_age_seconds",
        "How long the longest-waiting due message has been due (0: none is due).",
        value=(now - oldest).total_seconds() if oldest else 0.0,
    )


def inbound_metrics(now: datetime) -> Iterator[Metric]:
    counts = inbound.status_counts()
    yield CounterMetricFamily(
        f"{PREFIX}_inbound_updates_stored", "Telegram updates stored.", value=sum(counts.values())
    )
    yield by_label(
        GaugeMetricFamily,
        "inbound_updates",
        "Stored Telegram updates by status (received, processed, ignored, failed).",
        "status",
        counts,
    )
    yield CounterMetricFamily(
        f"{PREFIX}_inbound_updates_duplicate",
        "Deliveries of an update already stored, turned away.",
        value=inbound.duplicate_count(),
    )


def approval_metrics(now: datetime) -> Iterator[Metric]:
    yield by_label(
        CounterMetricFamily,
        "approvals_requested",
        "Approval requests made, by kind.",
        "kind",
        selectors.requests_by_kind(),
    )
    decided = CounterMetricFamily(
        f"{PREFIX}_approvals_decided",
        "Decisions on approval requests by decision, source (channel or default) and kind.",
        labels=["decision", "source", "kind"],
    )
    for labels, count in selectors.decisions().items():
        decided.add_metric(list(labels), count)
    yield decided
    yield GaugeMetricFamily(
        f"{PREFIX}_approvals_pending",
        "Requests awaiting a decision.",
        value=selectors.pending_approvals(),
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_approvals_overdue",
        "Requests still awaiting a decision after their first reminder time.",
        value=selectors.overdue_approvals(now),
    )
    histogram = HistogramMetricFamily(
        f"{PREFIX}_approval_decision_seconds",
        "Time from request to decision, in seconds, of requests decided so far.",
    )
    add_histogram(histogram, [], selectors.decision_times())
    yield histogram


def claim_metrics(now: datetime) -> Iterator[Metric]:
    counted = selectors.audit_counts(selectors.CLAIM_ACTIONS)
    yield by_label(
        CounterMetricFamily,
        "claim_events",
        "Lease events by action: acquired, refreshed, taken_over, released, refused, ...",
        "action",
        {
            action.removeprefix("claim."): counted.get((action,), 0)
            for action in selectors.CLAIM_ACTIONS
        },
    )
    yield by_label(
        GaugeMetricFamily,
        "claims",
        "Leases by state: live, expired (run out, not released), released.",
        "state",
        selectors.claims_by_state(now),
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_claim_waiters",
        "Claimers waiting in line for a busy work item.",
        value=selectors.claim_waiters(),
    )


def job_metrics(now: datetime) -> Iterator[Metric]:
    yield by_label(
        GaugeMetricFamily,
        "jobs",
        "Jobs by status: awaiting_approval, queued, running, and each outcome (succeeded, "
        "failed, cancelled, refused).",
        "status",
        selectors.jobs_by_status(),
    )
    steps = HistogramMetricFamily(
        f"{PREFIX}_job_step_duration_seconds",
        "How long job steps took, in seconds, by the step's status, of steps that ran to an end.",
        labels=["status"],
    )
    for status, found in selectors.step_durations().items():
        add_histogram(steps, [status], found)
    yield steps


def worker_metrics(now: datetime) -> Iterator[Metric]:
    age = heartbeat.age(now)
    yield GaugeMetricFamily(
        f"{PREFIX}_worker_heartbeat_age_seconds",
        "Seconds since a worker last beat (NaN: never).",
        value=float("nan") if age is None else age,
    )


SECTIONS: list[Section] = [
    outbox_metrics,
    inbound_metrics,
    approval_metrics,
    claim_metrics,
    job_metrics,
    worker_metrics,
]


class ClaimdeskCollector(Collector):
    """Every section's metrics, read from the database when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        for section in SECTIONS:
            yield from section(now)


def registry() -> CollectorRegistry:
    """A registry of Claimdesk's metrics alone: no process metrics of whichever web process
    happens to answer, which would differ from scrape to scrape behind a load balancer."""
    found = CollectorRegistry(auto_describe=False)
    found.register(ClaimdeskCollector())
    return found
