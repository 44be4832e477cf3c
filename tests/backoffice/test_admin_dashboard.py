"""The admin's front page for the people on call, and the cost of the busiest admin pages."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from model_bakery import baker

from audit.services import record
from automation.models import Job
from backoffice.actors import Actor, Source
from claims.models import ApprovalRequest
from monitoring import heartbeat
from telegram_bridge.models import InboundUpdate, OutboundMessage
from tests.claims.leases import live_lease
from tests.telegram.outbound import outbound_message

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:index")


def make_world(size, start=0):
    """``size`` of everything the dashboard shows: requests, leases, dead letters, failures."""
    now = timezone.now()
    for index in range(start, start + size):
        baker.make(
            ApprovalRequest,
            text=f"Deploy build {index} to production",
            requested_by="deploy-bot",
            expires_at=now + timedelta(hours=1),
        )
        live_lease(f"story-{index}")
        outbound_message(OutboundMessage.Status.DEAD, dedupe_key=f"dead-{index}")
        baker.make(InboundUpdate, update_id=index, payload={}, status=InboundUpdate.Status.FAILED)
        for status in (Job.Status.RUNNING, Job.Status.FAILED):
            baker.make(
                Job,
                name=f"job-{index}",
                status=status,
                manifest={},
                finished_at=now,
                approval__status=ApprovalRequest.Status.APPROVED,
            )
        record(
            "approval.approved",
            actor=Actor(source=Source.ADMIN, user=baker.make("auth.User")),
            object_type="claims.approvalrequest",
            object_id=str(index),
        )


def queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def test_dashboard_shows_what_needs_attention(admin_client):
    make_world(3)
    approval = ApprovalRequest.objects.filter(requested_by="deploy-bot").first()
    dead = OutboundMessage.objects.first()

    page = admin_client.get(DASHBOARD).content.decode()

    for panel in (
        "pending",
        "deadlines",
        "leases",
        "dead_letters",
        "failed_updates",
        "jobs",
        "heartbeat",
        "rates",
    ):
        assert f'id="panel-{panel}"' in page
    assert approval.short_id in page
    assert f'title="{approval.text}"' in page
    assert 'data-confirm="Deny request' in page
    assert reverse("admin:telegram_bridge_outboundmessage_requeue", args=[dead.pk]) in page
    assert "story-0/release" in page
    assert "<svg" in page and 'class="failed"' in page
    # "Recent actions" is the audit trail, linked to the events' objects.
    assert reverse("admin:claims_approvalrequest_change", args=["0"]) in page


def test_jobs_panel_links_running_and_failed_jobs(admin_client):
    make_world(1)
    failed = Job.objects.get(status=Job.Status.FAILED)
    running = Job.objects.get(status=Job.Status.RUNNING)
    baker.make(Job, status=Job.Status.SUCCEEDED, name="quiet-success", manifest={})

    page = admin_client.get(DASHBOARD).content.decode()

    for job in (failed, running):
        assert reverse("admin:automation_job_change", args=[job.pk]) in page
    assert "quiet-success" not in page
    assert "1 running, 1 failed" in page


@pytest.mark.parametrize(
    ("beat_ago", "shown"),
    [(None, "No worker has ever beaten"), (30, "status-alive"), (600, "status-silent")],
)
def test_heartbeat_panel_is_green_only_within_the_limit(admin_client, settings, beat_ago, shown):
    settings.WORKER_HEARTBEAT_MAX_AGE = 120
    if beat_ago is not None:
        heartbeat.beat(timezone.now() - timedelta(seconds=beat_ago))

    panel = admin_client.get(DASHBOARD).content.decode().split('id="panel-heartbeat"')[1]

    assert shown in panel.split("</section>")[0]


def test_dashboard_costs_the_same_queries_with_more_rows(admin_client):
    make_world(2)
    few = queries(admin_client, DASHBOARD)
    make_world(10, start=2)

    assert queries(admin_client, DASHBOARD) == few


def test_rates_count_failed_and_retried_messages_of_the_last_day(admin_client):
    outbound_message(OutboundMessage.Status.DEAD, dedupe_key="a")
    outbound_message(OutboundMessage.Status.SENT, dedupe_key="b", attempts=2)
    outbound_message(OutboundMessage.Status.SENT, dedupe_key="c")
    outbound_message(OutboundMessage.Status.SENT, dedupe_key="d")

    charts = admin_client.get(DASHBOARD).context["panels"][-1].context["charts"]

    day, week = charts
    assert (day.sent, week.sent) == (4, 4)
    assert (day.failed[-1], day.retried[-1]) == (0.25, 0.5)
    assert (week.failed[-1], len(week.labels), len(day.labels)) == (0.25, 7, 24)


def test_approve_from_the_dashboard_comes_back_to_it(admin_client):
    approval = baker.make(
        ApprovalRequest, text="Ship it", expires_at=timezone.now() + timedelta(hours=1)
    )

    response = admin_client.post(
        reverse("admin:claims_approvalrequest_step", args=[approval.pk]),
        {"step": "approve", "next": DASHBOARD},
    )

    assert response.status_code == 302 and response.url == DASHBOARD
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED


def test_a_foreign_next_address_is_ignored(admin_client):
    approval = baker.make(ApprovalRequest, expires_at=timezone.now() + timedelta(hours=1))
    url = reverse("admin:claims_approvalrequest_step", args=[approval.pk])

    response = admin_client.post(url, {"step": "deny", "next": "https://elsewhere.example/"})

    assert response.url == reverse("admin:claims_approvalrequest_change", args=[approval.pk])


def test_the_site_root_and_view_site_lead_to_the_dashboard(admin_client):
    response = admin_client.get("/")

    assert response.status_code == 302 and response.url == DASHBOARD
    assert f'href="{DASHBOARD}">View site' in admin_client.get(DASHBOARD).content.decode()


@pytest.mark.parametrize(
    "url",
    [
        reverse("admin:claims_claim_changelist"),
        reverse("admin:claims_approvalrequest_changelist"),
        f"{reverse('admin:claims_approvalrequest_changelist')}?status__exact=all",
        reverse("admin:audit_auditevent_changelist"),
        f"{reverse('admin:telegram_bridge_outboundmessage_changelist')}?delivery=all",
        reverse("admin:telegram_bridge_inboundupdate_changelist"),
    ],
    ids=["claims", "pending", "approvals", "audit", "outbox", "inbound"],
)
def test_change_lists_cost_the_same_queries_with_more_rows(admin_client, url):
    make_world(2)
    few = queries(admin_client, url)
    make_world(10, start=2)

    assert queries(admin_client, url) == few
