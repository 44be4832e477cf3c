"""Every metric family /metrics exposes, with the values the rows give."""

import math
from datetime import timedelta

import pytest
from django.utils import timezone
from model_bakery import baker

from audit.services import record
from automation.models import Job, JobStep
from backoffice.actors import Actor, Source, system_actor
from claims import services
from claims.errors import ClaimConflict
from claims.models import ApprovalRequest
from telegram_bridge import inbound

from .scrape import scrape, value

pytestmark = pytest.mark.django_db


def message(status, *, attempts=0, failed_ago=None, due_ago=None):
    now = timezone.now()
    return baker.make(
        "telegram_bridge.OutboundMessage",
        status=status,
        attempts=attempts,
        chat_id=-1001,
        failed_at=now - failed_ago if failed_ago is not None else None,
        next_attempt_at=now - (due_ago or timedelta(0)),
    )


def test_outbox_metrics_count_messages_failures_requeues_and_the_backlog(client, approver):
    message("sent", attempts=1)
    message("sent", attempts=3, failed_ago=timedelta(minutes=10))
    message("dead", attempts=5, failed_ago=timedelta(hours=2))
    message("failed", attempts=1, failed_ago=timedelta(minutes=5), due_ago=timedelta(seconds=60))
    message("queued", due_ago=timedelta(seconds=30))
    message("queued", due_ago=-timedelta(minutes=5))
    requeued = message("queued")
    record("telegram.requeued", actor=system_actor("auto_requeue"), obj=requeued)
    record("telegram.requeued", actor=Actor(source=Source.ADMIN, user=approver), obj=requeued)

    samples = scrape(client)

    statuses = {"queued": 3, "sending": 0, "sent": 2, "failed": 1, "dead": 1}
    for status, count in statuses.items():
        assert value(samples, "claimdesk_outbox_messages", status=status) == count
    assert value(samples, "claimdesk_outbox_sent_total") == 2
    assert value(samples, "claimdesk_outbox_failed_attempts") == 2 + 5 + 1
    assert value(samples, "claimdesk_outbox_failed_attempts_last_hour") == 2 + 1
    assert value(samples, "claimdesk_outbox_requeued_total", source="system") == 1
    assert value(samples, "claimdesk_outbox_requeued_total", source="admin") == 1
    assert value(samples, "claimdesk_outbox_queue_depth") == 3
    assert 60 <= value(samples, "claimdesk_outbox_oldest_due_age_seconds") < 120


def test_inbound_metrics_count_stored_updates_by_status_and_duplicates(client):
    edited = {"update_id": 7, "edited_message": {"message_id": 1}}
    inbound.store(edited, dispatch=False)
    inbound.store(edited, dispatch=False)
    inbound.store(edited, dispatch=False)
    baker.make("telegram_bridge.InboundUpdate", update_id=8, status="failed", payload={})
    baker.make("telegram_bridge.InboundUpdate", update_id=9, status="processed", payload={})

    samples = scrape(client)

    assert value(samples, "claimdesk_inbound_updates_stored_total") == 3
    assert value(samples, "claimdesk_inbound_updates", status="ignored") == 1
    assert value(samples, "claimdesk_inbound_updates", status="failed") == 1
    assert value(samples, "claimdesk_inbound_updates", status="processed") == 1
    assert value(samples, "claimdesk_inbound_updates", status="received") == 0
    assert value(samples, "claimdesk_inbound_updates_duplicate_total") == 2


def test_approval_metrics_count_requests_decisions_and_time_to_decision(
    client, agent_actor, approver_actor
):
    asked = [
        services.request_approval(kind=kind, text="Deploy?", actor=agent_actor)
        for kind in ("command", "command", "manifest", "claim")
    ]
    services.decide(asked[0].pk, "approve", actor=approver_actor)
    services.decide(asked[1].pk, "deny", actor=approver_actor)
    ApprovalRequest.objects.filter(pk=asked[1].pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )

    samples = scrape(client)

    for kind, count in {"command": 2, "manifest": 1, "claim": 1}.items():
        assert value(samples, "claimdesk_approvals_requested_total", kind=kind) == count
    decided = "claimdesk_approvals_decided_total"
    assert value(samples, decided, decision="approved", source="admin", kind="command") == 1
    assert value(samples, decided, decision="denied", source="admin", kind="command") == 1
    assert value(samples, "claimdesk_approvals_pending") == 2
    assert value(samples, "claimdesk_approvals_overdue") == 0
    histogram = "claimdesk_approval_decision_seconds"
    assert value(samples, f"{histogram}_bucket", le="60.0") == 1
    assert value(samples, f"{histogram}_bucket", le="3600.0") == 1
    assert value(samples, f"{histogram}_bucket", le="14400.0") == 2
    assert value(samples, f"{histogram}_bucket", le="+Inf") == 2
    assert value(samples, f"{histogram}_count") == 2
    assert 7200 <= value(samples, f"{histogram}_sum") < 7260


def test_overdue_approvals_are_those_past_their_first_reminder(client, agent_actor):
    approval = services.request_approval(kind="command", text="Deploy?", actor=agent_actor)
    ApprovalRequest.objects.filter(pk=approval.pk).update(
        next_reminder_at=timezone.now() - timedelta(minutes=1)
    )

    assert value(scrape(client), "claimdesk_approvals_overdue") == 1


def test_claim_metrics_count_lease_events_states_and_waiters(client, agent_actor):
    services.claim(story="S-1", todolist="build", agent_id="agent-7", actor=agent_actor)
    services.claim(story="S-2", todolist="build", agent_id="agent-7", actor=agent_actor)
    now = timezone.now()
    expired = baker.make(
        "claims.Claim", story="S-3", todolist="t", acquired_at=now, expires_at=now, ttl_seconds=1
    )
    baker.make(
        "claims.Claim",
        story="S-4",
        todolist="t",
        acquired_at=now,
        expires_at=now,
        released_at=now,
        ttl_seconds=1,
    )
    baker.make("claims.ClaimWaiter", claim=expired, joined_at=now, seen_until=now)
    record("claim.taken_over", actor=agent_actor, obj=expired)
    with pytest.raises(ClaimConflict):
        services.claim(story="S-1", todolist="build", agent_id="agent-8", actor=agent_actor)

    samples = scrape(client)

    assert value(samples, "claimdesk_claim_events_total", action="acquired") == 2
    assert value(samples, "claimdesk_claim_events_total", action="taken_over") == 1
    assert value(samples, "claimdesk_claim_events_total", action="refused") == 0
    assert value(samples, "claimdesk_claim_events_total", action="conflict") == 1
    assert value(samples, "claimdesk_claims", state="live") == 2
    assert value(samples, "claimdesk_claims", state="expired") == 1
    assert value(samples, "claimdesk_claims", state="released") == 1
    assert value(samples, "claimdesk_claim_waiters") == 1


def test_job_metrics_count_jobs_by_status_and_step_durations(client):
    running = baker.make(Job, status=Job.Status.RUNNING, manifest={})
    failed = baker.make(Job, status=Job.Status.FAILED, manifest={})
    baker.make(Job, status=Job.Status.FAILED, manifest={})
    for job, status, duration_ms in [
        (running, JobStep.Status.SUCCEEDED, 400),
        (running, JobStep.Status.SUCCEEDED, 12_000),
        (running, JobStep.Status.RUNNING, None),
        (failed, JobStep.Status.FAILED, 90_000),
    ]:
        baker.make(JobStep, job=job, status=status, duration_ms=duration_ms, argv=[])

    samples = scrape(client)

    assert value(samples, "claimdesk_jobs", status="running") == 1
    assert value(samples, "claimdesk_jobs", status="failed") == 2
    assert value(samples, "claimdesk_jobs", status="succeeded") == 0
    steps = "claimdesk_job_step_duration_seconds"
    assert value(samples, f"{steps}_bucket", status="succeeded", le="1.0") == 1
    assert value(samples, f"{steps}_bucket", status="succeeded", le="30.0") == 2
    assert value(samples, f"{steps}_count", status="succeeded") == 2
    assert value(samples, f"{steps}_sum", status="succeeded") == pytest.approx(12.4)
    assert value(samples, f"{steps}_bucket", status="failed", le="60.0") == 0
    assert value(samples, f"{steps}_bucket", status="failed", le="300.0") == 1
    assert value(samples, f"{steps}_count", status="failed") == 1


def test_worker_heartbeat_age_is_nan_before_the_first_beat_then_seconds(client):
    assert math.isnan(value(scrape(client), "claimdesk_worker_heartbeat_age_seconds"))
    baker.make(
        "monitoring.WorkerHeartbeat", worker="w1", beat_at=timezone.now() - timedelta(seconds=40)
    )

    assert 40 <= value(scrape(client), "claimdesk_worker_heartbeat_age_seconds") < 100


def test_a_scrape_costs_the_same_number_of_queries_however_many_rows(
    client, django_assert_max_num_queries, agent_actor
):
    for number in range(20):
        services.request_approval(kind="command", text=f"Deploy {number}?", actor=agent_actor)
        message("dead", attempts=5, failed_ago=timedelta(minutes=number))

    with django_assert_max_num_queries(20):
        scrape(client)
