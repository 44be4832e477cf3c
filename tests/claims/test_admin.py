"""The admin as staff use it: list pages, bulk actions, change-page buttons, all audited."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from claims import services
from claims.errors import Frozen
from claims.models import ApprovalPolicy, ApprovalRequest, Claim

pytestmark = pytest.mark.django_db

Status = ApprovalRequest.Status
CLAIMS_URL = reverse("admin:claims_claim_changelist")
APPROVALS_URL = reverse("admin:claims_approvalrequest_changelist")
# The list opens on pending requests; this is the list of every request.
ALL_APPROVALS_URL = f"{APPROVALS_URL}?status__exact=all"


def texts(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def step_url(approval):
    return reverse("admin:claims_approvalrequest_step", args=[approval.pk])


def change_url(approval):
    return reverse("admin:claims_approvalrequest_change", args=[approval.pk])


def make_claim(agent, *, story="checkout", todolist="payment-form", ttl=300):
    """A granted lease, and its lease token as ``claim.lease_token`` for the test to look for."""
    owner, _ = User.objects.get_or_create(username=f"owner-of-{agent}")
    granted = services.claim(
        story=story,
        todolist=todolist,
        agent_id=agent,
        fingerprint=f"{agent}-fp",
        ttl_seconds=ttl,
        actor=Actor(source=Source.API, user=owner, label=agent),
    )
    granted.claim.lease_token = granted.lease_token
    return granted.claim


def release(claim):
    services.release(
        claim.pk,
        lease_token=claim.lease_token,
        actor=Actor(source=Source.API, user=claim.owner_user),
    )


@pytest.fixture
def approver_client(client, approver):
    client.force_login(approver)
    return client


@pytest.fixture
def supervisor_client(client, supervisor):
    client.force_login(supervisor)
    return client


def test_claim_list_shows_holder_and_human_durations_for_each_state(admin_client):
    live = make_claim("builder-7", todolist="live", ttl=3600)
    expired = make_claim("builder-8", todolist="expired")
    Claim.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(hours=3))
    released = make_claim("builder-9", todolist="released")
    release(released)

    response = admin_client.get(CLAIMS_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "owner-of-builder-7 (builder-7)" in page
    assert "checkout/live" in page
    assert "59 min left" in page
    assert "expired 3 h ago" in page and "released 0 s ago" in page
    assert live.lease_token not in page
    assert admin_client.get(CLAIMS_URL, {"lease": "live"}).context["cl"].result_count == 1
    assert admin_client.get(CLAIMS_URL, {"lease": "expired"}).context["cl"].result_count == 1
    assert admin_client.get(CLAIMS_URL, {"lease": "released"}).context["cl"].result_count == 1
    assert admin_client.get(CLAIMS_URL, {"lease": "stale"}).context["cl"].result_count == 1
    assert admin_client.get(CLAIMS_URL, {"q": "builder-8"}).context["cl"].result_count == 1


def test_claims_are_not_added_edited_or_deleted_by_hand(admin_client):
    claim = make_claim("builder-7")
    change = reverse("admin:claims_claim_change", args=[claim.pk])

    assert admin_client.get(reverse("admin:claims_claim_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:claims_claim_delete", args=[claim.pk])).status_code == 403
    )
    page = admin_client.get(change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    admin_client.post(change, {"owner": "mallory"})
    claim.refresh_from_db()
    assert claim.owner == "owner-of-builder-7"


def test_claim_page_shows_history_ttl_fencing_token_and_no_lease_token(admin_client):
    claim = make_claim("builder-7", ttl=600)
    services.refresh(
        claim.pk,
        lease_token=claim.lease_token,
        actor=Actor(source=Source.CLI, user=claim.owner_user, label="builder-7"),
    )

    page = admin_client.get(reverse("admin:claims_claim_change", args=[claim.pk]))

    assert [event.action for event in page.context["history"]] == [
        "claim.acquired",
        "claim.refreshed",
    ]
    content = page.content.decode()
    assert "owner-of-builder-7 (builder-7)" in content
    assert "TTL" in content and "10 min" in content and "Ttl seconds" not in content
    assert "Fencing token" in content
    assert claim.lease_token not in content
    assert claim.lease_token_hash not in content


def test_force_release_action_needs_a_reason_and_is_audited_with_it(supervisor_client, supervisor):
    live = make_claim("builder-7", todolist="live")
    released = make_claim("builder-8", todolist="done")
    release(released)
    selected = {"action": "force_release", "_selected_action": [live.pk, released.pk]}

    refused = supervisor_client.post(CLAIMS_URL, selected, follow=True)
    response = supervisor_client.post(
        CLAIMS_URL, {**selected, "reason": "agent crashed"}, follow=True
    )

    assert texts(refused) == ["Give a reason: nothing is force-released without one."]
    assert texts(response) == ["1 force-released; 1 skipped: checkout/done is already released"]
    live.refresh_from_db()
    assert not live.is_live()
    event = AuditEvent.objects.get(action="claim.force_released")
    assert (event.actor, event.source, event.object_id) == (supervisor, "admin", str(live.pk))
    assert event.details["note"] == "agent crashed"


def test_take_over_action_gives_the_lease_to_the_staff_user(supervisor_client, supervisor):
    claim = make_claim("builder-7")

    response = supervisor_client.post(
        CLAIMS_URL,
        {"action": "take_over", "_selected_action": [claim.pk], "reason": "hot fix"},
        follow=True,
    )

    assert texts(response) == ["1 taken over"]
    claim.refresh_from_db()
    assert (claim.owner, claim.previous_agent_id) == ("supervisor", "builder-7")
    assert AuditEvent.objects.get(action="claim.taken_over").actor == supervisor


@pytest.mark.parametrize("step", ["force_release", "take_over", "freeze"])
def test_claim_page_buttons_need_a_reason_and_are_audited(supervisor_client, supervisor, step):
    claim = make_claim("builder-7")
    url = reverse("admin:claims_claim_lease", args=[claim.pk])
    page = supervisor_client.get(reverse("admin:claims_claim_change", args=[claim.pk]))
    assert f'value="{step}"' in page.content.decode()

    refused = supervisor_client.post(url, {"step": step, "reason": " "}, follow=True)
    done = supervisor_client.post(url, {"step": step, "reason": "on call says so"}, follow=True)

    assert "Give a reason" in texts(refused)[0]
    assert texts(done)[0].startswith("1 ")
    event = AuditEvent.objects.exclude(action="claim.acquired").get()
    assert (event.actor, event.details["note"]) == (supervisor, "on call says so")
    assert claim.lease_token not in done.content.decode()


def test_a_frozen_work_item_shows_its_reason_and_refuses_claims(supervisor_client):
    claim = make_claim("builder-7")
    release(claim)
    supervisor_client.post(
        reverse("admin:claims_claim_lease", args=[claim.pk]),
        {"step": "freeze", "reason": "incident 42"},
    )

    page = supervisor_client.get(reverse("admin:claims_claim_change", args=[claim.pk]))

    assert "incident 42" in page.content.decode()
    with pytest.raises(Frozen):
        make_claim("builder-8")


def test_claim_page_buttons_need_the_permission(client, supervisor):
    claim = make_claim("builder-7")
    viewer = baker.make("auth.User", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_claim"))
    client.force_login(viewer)

    page = client.get(reverse("admin:claims_claim_change", args=[claim.pk]))
    response = client.post(
        reverse("admin:claims_claim_lease", args=[claim.pk]),
        {"step": "force_release", "reason": "x"},
    )

    assert "Lease console" not in page.content.decode()
    assert response.status_code == 403


def test_claim_actions_are_offered_only_with_the_permission(client, supervisor):
    make_claim("builder-7")
    client.force_login(supervisor)
    offered = client.get(CLAIMS_URL).context["action_form"].fields["action"].choices
    assert {"force_release", "take_over", "freeze", "unfreeze"} <= {name for name, _ in offered}

    viewer = baker.make("auth.User", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_claim"))
    client.force_login(viewer)
    response = client.get(CLAIMS_URL)
    assert response.status_code == 200
    assert response.context["action_form"] is None


def test_approval_and_audit_lists_render(approver_client, admin_client, make_approval):
    make_approval(text="Run migrate on production")
    make_approval(status=Status.DENIED, kind="manifest")

    response = approver_client.get(APPROVALS_URL)
    assert response.status_code == 200
    assert "Run migrate on production" in response.content.decode()
    assert approver_client.get(APPROVALS_URL, {"status__exact": "pending"}).status_code == 200
    assert approver_client.get(APPROVALS_URL, {"kind__exact": "command"}).status_code == 200
    assert admin_client.get(reverse("admin:audit_auditevent_changelist")).status_code == 200


@pytest.mark.parametrize("term", ["migrate", "ops-bot", "short-id", "full-id"], ids=str)
def test_approvals_are_found_by_text_requester_or_id(term, approver_client, make_approval):
    wanted = make_approval(text="Run migrate on production", requested_by="ops-bot")
    make_approval(text="Restart workers", requested_by="deploy-bot")
    query = {"short-id": wanted.short_id, "full-id": str(wanted.pk)}.get(term, term)

    response = approver_client.get(APPROVALS_URL, {"q": query})

    assert [a.pk for a in response.context["cl"].result_list] == [wanted.pk]


def test_bulk_approve_reports_changed_and_skipped(approver_client, approver, make_approval):
    pending = [make_approval(), make_approval()]
    denied = make_approval(status=Status.DENIED)
    already = make_approval(status=Status.APPROVED)
    overdue = make_approval(expires_in=-timedelta(minutes=1))
    selected = [*pending, denied, already, overdue]

    response = approver_client.post(
        ALL_APPROVALS_URL,
        {"action": "approve", "_selected_action": [str(a.pk) for a in selected], "post": "yes"},
        follow=True,
    )

    assert response.status_code == 200
    [message] = texts(response)
    assert message.startswith("2 approved; 3 skipped: ")
    assert f"{denied.short_id} is denied" in message
    assert f"{already.short_id} is already approved" in message
    assert f"Request {overdue.short_id} expired at" in message
    events = AuditEvent.objects.filter(action="approval.approved")
    assert {e.object_id for e in events} == {str(a.pk) for a in pending}
    assert {(e.actor, e.source) for e in events} == {(approver, "admin")}


@pytest.mark.parametrize(
    ("action", "start", "end"),
    [
        ("deny", Status.PENDING, Status.DENIED),
        ("postpone", Status.PENDING, Status.POSTPONED),
        ("archive", Status.APPROVED, Status.ARCHIVED),
    ],
)
def test_bulk_actions_call_the_services(action, start, end, approver_client, make_approval):
    approval = make_approval(status=start)

    response = approver_client.post(
        ALL_APPROVALS_URL,
        {"action": action, "_selected_action": [str(approval.pk)], "post": "yes"},
        follow=True,
    )

    assert texts(response) == [f"1 {end}"]
    approval.refresh_from_db()
    assert approval.status == end


def test_bulk_archive_of_an_undecided_request_says_why(approver_client, make_approval):
    approval = make_approval()

    response = approver_client.post(
        APPROVALS_URL, {"action": "archive", "_selected_action": [str(approval.pk)]}, follow=True
    )

    assert texts(response) == [
        f"0 archived; 1 skipped: Request {approval.short_id} is pending; decide it before archiving"
    ]


def test_change_page_shows_only_possible_steps(approver_client, make_approval):
    pending = make_approval()
    postponed = make_approval(status=Status.POSTPONED)
    approved = make_approval(status=Status.APPROVED)
    overdue = make_approval(expires_in=-timedelta(minutes=1))

    def steps(approval):
        return [step for step, _ in approver_client.get(change_url(approval)).context["steps"]]

    assert steps(pending) == ["approve", "deny", "postpone"]
    assert steps(postponed) == ["approve", "deny", "reopen"]
    assert steps(approved) == ["archive"]
    assert steps(overdue) == []


def test_change_page_offers_no_steps_without_the_permission(client, make_approval):
    viewer = baker.make("auth.User", is_staff=True, is_superuser=False)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_approvalrequest"))
    client.force_login(viewer)
    approval = make_approval()

    response = client.get(change_url(approval))

    assert response.status_code == 200
    assert response.context["steps"] == []
    assert 'id="approvalrequest_steps"' not in response.content.decode()
    refused = client.post(step_url(approval), {"step": "approve"}, follow=True)
    assert texts(refused) == [
        f"0 approved; 1 skipped: {viewer.username} may not decide approval requests"
    ]
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


def test_change_page_button_decides_with_a_note_and_shows_the_history(
    approver_client, approver, make_approval
):
    approval = make_approval()

    response = approver_client.post(
        step_url(approval), {"step": "deny", "note": "Not during the freeze"}, follow=True
    )

    assert response.redirect_chain[-1][0] == change_url(approval)
    assert texts(response) == ["1 denied"]
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by, approval.decision_note) == (
        Status.DENIED,
        approver,
        "Not during the freeze",
    )
    event = AuditEvent.objects.get(object_id=str(approval.pk))
    assert (event.action, event.actor, event.source) == ("approval.denied", approver, "admin")
    page = response.content.decode()
    assert 'id="audit_history"' in page
    assert "approval.denied" in page and "Not during the freeze" in page


def test_change_page_button_refusals_become_messages(approver_client, make_approval):
    approval = make_approval(status=Status.DENIED)

    refused = approver_client.post(step_url(approval), {"step": "approve"}, follow=True)
    unknown = approver_client.post(step_url(approval), {"step": "explode"}, follow=True)
    missing = approver_client.post(
        reverse("admin:claims_approvalrequest_step", args=["not-a-request"]),
        {"step": "approve"},
        follow=True,
    )

    assert texts(refused) == [f"0 approved; 1 skipped: {approval.short_id} is denied"]
    assert texts(unknown) == ["Unknown step 'explode'."]
    assert missing.status_code == 200
    assert texts(missing) == ["No approval request with id not-a-request."]
    assert not AuditEvent.objects.exists()


def test_change_page_buttons_need_post_and_csrf(approver, make_approval):
    approval = make_approval()
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)

    assert client.get(step_url(approval)).status_code == 405
    assert client.post(step_url(approval), {"step": "approve"}).status_code == 403
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


def test_approval_requests_are_not_added_edited_or_deleted_by_hand(admin_client, make_approval):
    approval = make_approval()

    assert admin_client.get(reverse("admin:claims_approvalrequest_add")).status_code == 403
    delete = reverse("admin:claims_approvalrequest_delete", args=[approval.pk])
    assert admin_client.get(delete).status_code == 403
    admin_client.post(change_url(approval), {"status": "approved", "text": "changed"})
    approval.refresh_from_db()
    assert (approval.status, approval.text) == (
        Status.PENDING,
        "Restart the queue workers on worker-03",
    )


# --- Approval policies and votes --------------------------------------------------------------

POLICIES_URL = reverse("admin:claims_approvalpolicy_changelist")


def policy_form(**changes):
    form = {
        "name": "Production releases",
        "kind": "manifest",
        "story_pattern": "release-*",
        "quorum": "2",
        "requester_may_approve": "",
        "deadline_minutes": "240",
        "default_outcome": "expire",
        "reminder_fractions": "0.5",
        "escalate_after_minutes": "",
        "escalation_chat_id": "",
    }
    return {**form, **changes}


def test_policies_are_added_changed_and_deleted_in_the_admin_with_audit(admin_client, admin_user):
    added = admin_client.post(reverse("admin:claims_approvalpolicy_add"), policy_form())
    assert added.status_code == 302, added.content.decode()[:2000]
    policy = ApprovalPolicy.objects.get(name="Production releases")

    changed = admin_client.post(
        reverse("admin:claims_approvalpolicy_change", args=[policy.pk]), policy_form(quorum="3")
    )
    assert changed.status_code == 302
    page = admin_client.get(reverse("admin:claims_approvalpolicy_change", args=[policy.pk]))
    deleted = admin_client.post(
        reverse("admin:claims_approvalpolicy_delete", args=[policy.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 302

    events = AuditEvent.objects.filter(object_type="claims.approvalpolicy").order_by("id")
    assert [(e.action, e.actor, e.source) for e in events] == [
        ("policy.created", admin_user, "admin"),
        ("policy.changed", admin_user, "admin"),
        ("policy.deleted", admin_user, "admin"),
    ]
    assert events[1].details["changed"] == ["quorum"]
    assert "changed: quorum" in page.content.decode()
    assert not ApprovalPolicy.objects.filter(name="Production releases").exists()


def test_an_inconsistent_policy_is_a_form_error_not_a_crash(admin_client):
    response = admin_client.post(
        reverse("admin:claims_approvalpolicy_add"), policy_form(default_outcome="approve")
    )

    assert response.status_code == 200
    assert "only for a kind this policy marks low-risk" in response.content.decode()
    assert not ApprovalPolicy.objects.filter(name="Production releases").exists()
    assert not AuditEvent.objects.exists()


def test_change_page_votes_under_a_quorum_and_lists_the_votes(
    client, make_policy, release_managers, agent_actor
):
    make_policy(kind="manifest", quorum=2, approver_groups=[release_managers])
    approval = services.request_approval(kind="manifest", text="Release 2.4", actor=agent_actor)
    client.force_login(release_managers.user_set.get(username="alice"))

    before = client.get(change_url(approval)).content.decode()
    response = client.post(step_url(approval), {"step": "approve"}, follow=True)

    assert "Vote to approve" in before
    assert "0 of 2 approvals, waiting for alice, bob, carol" in before
    assert texts(response) == [
        f"1 vote counted: {approval.short_id} 1 of 2 approvals, waiting for bob, carol"
    ]
    page = response.content.decode()
    assert "approval.voted" in page
    assert 'id="votes-group"' in page and ">alice<" in page
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


def test_the_request_list_shows_votes_and_time_to_decision(
    approver_client, approver_actor, make_approval
):
    now = timezone.now()
    for minutes in (10, 20, 30):
        approval = make_approval()
        services.decide(approval.pk, "approve", actor=approver_actor)
        ApprovalRequest.objects.filter(pk=approval.pk).update(
            created_at=now - timedelta(minutes=minutes)
        )
    old = make_approval(kind=ApprovalRequest.Kind.MANIFEST)
    services.decide(old.pk, "deny", actor=approver_actor)
    ApprovalRequest.objects.filter(pk=old.pk).update(
        created_at=now - timedelta(days=20, hours=2), decided_at=now - timedelta(days=20)
    )

    page = approver_client.get(ALL_APPROVALS_URL).content.decode()

    assert 'id="decision_times"' in page
    assert "<td>last 7 days</td><td>Command</td><td>3</td><td>0:20:00</td><td>0:28:00</td>" in page
    assert "<td>last 30 days</td><td>Release manifest</td><td>1</td><td>2:00:00</td>" in page
    assert "1 of 1 approval" in page


def test_no_vote_buttons_for_an_approver_the_policy_does_not_allow(
    approver_client, make_policy, release_managers, agent_actor
):
    make_policy(kind="manifest", quorum=2, approver_groups=[release_managers])
    approval = services.request_approval(kind="manifest", text="Release 2.4", actor=agent_actor)

    page = approver_client.get(change_url(approval)).content.decode()

    assert 'id="approvalrequest_steps"' not in page
    assert "0 of 2 approvals, waiting for alice, bob, carol" in page


def test_bulk_decision_asks_for_confirmation_listing_the_requests(
    approver_client, approver, make_approval
):
    chosen = [make_approval(text="Deploy 2.4.0"), make_approval(text="Deploy 2.4.1")]
    selected = [str(a.pk) for a in chosen]

    page = approver_client.post(APPROVALS_URL, {"action": "deny", "_selected_action": selected})

    assert page.status_code == 200
    content = page.content.decode()
    assert all(a.short_id in content for a in chosen)
    assert 'name="note"' in content and 'value="Yes, deny 2 requests"' in content
    assert not AuditEvent.objects.filter(action="approval.denied").exists()

    done = approver_client.post(
        APPROVALS_URL,
        {"action": "deny", "_selected_action": selected, "post": "yes", "note": "Freeze week"},
        follow=True,
    )

    assert texts(done) == ["2 denied"]
    notes = AuditEvent.objects.filter(action="approval.denied").values_list(
        "details__decision_note", flat=True
    )
    assert list(notes) == ["Freeze week", "Freeze week"]


def test_request_list_opens_on_pending_and_shows_status_in_colour(approver_client, make_approval):
    pending = make_approval(text="x" * 200)
    make_approval(status=Status.DENIED)

    response = approver_client.get(APPROVALS_URL)

    assert [a.pk for a in response.context["cl"].result_list] == [pending.pk]
    content = response.content.decode()
    assert '<span class="status status-pending">Pending</span>' in content
    assert f'<span title="{"x" * 200}">' in content
    everything = approver_client.get(ALL_APPROVALS_URL)
    assert len(everything.context["cl"].result_list) == 2


def test_deny_button_asks_before_it_denies(approver_client, make_approval):
    approval = make_approval()

    content = approver_client.get(change_url(approval)).content.decode()

    assert 'value="approve" class="button approve"' in content
    assert f'value="deny" class="button deny" data-confirm="Deny request {approval.short_id}?"' in (
        content
    )
