from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted
from claims import services, tasks
from claims.models import ApprovalRequest

pytestmark = pytest.mark.django_db

Status = ApprovalRequest.Status
CHANGED, UNCHANGED, REFUSED = "changed", "unchanged", "refused"

# Every status against every decision, written out so a change in the rules shows up here.
TRANSITIONS = [
    (Status.PENDING, "approve", CHANGED, Status.APPROVED),
    (Status.PENDING, "deny", CHANGED, Status.DENIED),
    (Status.PENDING, "postpone", CHANGED, Status.POSTPONED),
    (Status.PENDING, "reopen", UNCHANGED, Status.PENDING),
    (Status.POSTPONED, "approve", CHANGED, Status.APPROVED),
    (Status.POSTPONED, "deny", CHANGED, Status.DENIED),
    (Status.POSTPONED, "postpone", UNCHANGED, Status.POSTPONED),
    (Status.POSTPONED, "reopen", CHANGED, Status.PENDING),
    (Status.APPROVED, "approve", UNCHANGED, Status.APPROVED),
    (Status.APPROVED, "deny", REFUSED, Status.APPROVED),
    (Status.APPROVED, "postpone", REFUSED, Status.APPROVED),
    (Status.APPROVED, "reopen", REFUSED, Status.APPROVED),
    (Status.DENIED, "approve", REFUSED, Status.DENIED),
    (Status.DENIED, "deny", UNCHANGED, Status.DENIED),
    (Status.DENIED, "postpone", REFUSED, Status.DENIED),
    (Status.DENIED, "reopen", REFUSED, Status.DENIED),
    (Status.EXPIRED, "approve", REFUSED, Status.EXPIRED),
    (Status.EXPIRED, "deny", REFUSED, Status.EXPIRED),
    (Status.EXPIRED, "postpone", REFUSED, Status.EXPIRED),
    (Status.EXPIRED, "reopen", REFUSED, Status.EXPIRED),
    (Status.EXECUTED, "approve", REFUSED, Status.EXECUTED),
    (Status.EXECUTED, "deny", REFUSED, Status.EXECUTED),
    (Status.EXECUTED, "postpone", REFUSED, Status.EXECUTED),
    (Status.EXECUTED, "reopen", REFUSED, Status.EXECUTED),
    (Status.ARCHIVED, "approve", REFUSED, Status.ARCHIVED),
    (Status.ARCHIVED, "deny", REFUSED, Status.ARCHIVED),
    (Status.ARCHIVED, "postpone", REFUSED, Status.ARCHIVED),
    (Status.ARCHIVED, "reopen", REFUSED, Status.ARCHIVED),
]


def events(approval):
    return list(
        AuditEvent.objects.filter(object_id=str(approval.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


@pytest.mark.parametrize(("start", "decision", "result", "end"), TRANSITIONS)
def test_decision_from_each_status(start, decision, result, end, make_approval, approver_actor):
    approval = make_approval(status=start)

    if result == REFUSED:
        with pytest.raises(InvalidTransition) as refused:
            services.decide(approval.pk, decision, actor=approver_actor)
        assert refused.value.status == start
    else:
        decided = services.decide(approval.pk, decision, actor=approver_actor, note="ok")
        assert decided.changed is (result == CHANGED)

    approval.refresh_from_db()
    assert approval.status == end
    assert len(events(approval)) == (1 if result == CHANGED else 0)


def test_approval_is_audited_with_the_approver(make_approval, approver, approver_actor):
    approval = make_approval()

    decided = services.decide(approval.pk, "approve", actor=approver_actor, note="Go ahead")

    assert decided.approval.decided_by == approver
    assert decided.approval.decision_source == "admin"
    assert decided.approval.decision_note == "Go ahead"
    event = AuditEvent.objects.get(object_id=str(approval.pk))
    assert (event.action, event.actor, event.source) == ("approval.approved", approver, "admin")
    assert event.details["previous_status"] == "pending"
    assert event.details["decision_note"] == "Go ahead"


def test_repeating_a_decision_writes_no_second_event(make_approval, approver_actor):
    approval = make_approval()

    first = services.decide(approval.pk, "approve", actor=approver_actor)
    second = services.decide(approval.pk, "approve", actor=approver_actor)

    assert (first.changed, second.changed) == (True, False)
    assert events(approval) == ["approval.approved"]


def test_approve_after_deny_is_refused(make_approval, approver_actor):
    approval = make_approval()
    services.decide(approval.pk, "deny", actor=approver_actor)

    with pytest.raises(InvalidTransition) as refused:
        services.decide(approval.pk, "approve", actor=approver_actor)

    assert refused.value.as_dict()["status"] == "denied"
    assert events(approval) == ["approval.denied"]


@pytest.mark.parametrize("status", [Status.PENDING, Status.POSTPONED])
def test_request_past_its_expiry_cannot_be_decided(status, make_approval, approver_actor):
    approval = make_approval(status=status, expires_in=-timedelta(minutes=1))

    with pytest.raises(InvalidTransition, match="expired"):
        services.decide(approval.pk, "approve", actor=approver_actor)

    approval.refresh_from_db()
    assert approval.status == status
    assert events(approval) == []


def test_postponed_request_is_reopened_to_pending(make_approval, approver_actor):
    approval = make_approval()
    services.decide(approval.pk, "postpone", actor=approver_actor, note="after the freeze")

    reopened = services.decide(approval.pk, "reopen", actor=approver_actor)

    assert reopened.approval.status == Status.PENDING
    assert reopened.approval.decided_by is None
    assert reopened.approval.decided_at is None
    assert events(approval) == ["approval.postponed", "approval.reopened"]


@pytest.mark.parametrize(
    ("start", "result"),
    [
        (Status.APPROVED, CHANGED),
        (Status.DENIED, CHANGED),
        (Status.EXPIRED, CHANGED),
        (Status.EXECUTED, CHANGED),
        (Status.ARCHIVED, UNCHANGED),
        (Status.PENDING, REFUSED),
        (Status.POSTPONED, REFUSED),
    ],
)
def test_archive_from_each_status(start, result, make_approval, approver_actor):
    approval = make_approval(status=start)

    if result == REFUSED:
        with pytest.raises(InvalidTransition):
            services.archive(approval.pk, actor=approver_actor)
    else:
        assert services.archive(approval.pk, actor=approver_actor).changed is (result == CHANGED)

    approval.refresh_from_db()
    assert (approval.status == Status.ARCHIVED) is (result != REFUSED)
    assert events(approval) == (["approval.archived"] if result == CHANGED else [])


def test_self_approval_is_refused_when_forbidden(settings, make_approval, approver, approver_actor):
    settings.APPROVAL_FORBID_SELF_APPROVAL = True
    approval = make_approval(requested_by_user=approver)

    with pytest.raises(NotPermitted):
        services.decide(approval.pk, "approve", actor=approver_actor)
    with pytest.raises(NotPermitted):
        services.decide(approval.pk, "deny", actor=approver_actor)

    approval.refresh_from_db()
    assert approval.status == Status.PENDING
    assert events(approval) == []


def test_self_approval_is_allowed_unless_forbidden(
    settings, make_approval, approver, approver_actor
):
    settings.APPROVAL_FORBID_SELF_APPROVAL = False
    approval = make_approval(requested_by_user=approver)

    assert services.decide(approval.pk, "approve", actor=approver_actor).changed


def test_others_may_approve_when_self_approval_is_forbidden(
    settings, make_approval, approver_actor
):
    settings.APPROVAL_FORBID_SELF_APPROVAL = True
    approval = make_approval(requested_by_user=baker.make("auth.User"))

    assert services.decide(approval.pk, "approve", actor=approver_actor).changed


@pytest.mark.parametrize(
    "actor",
    [
        lambda: Actor(source=Source.ADMIN, user=baker.make("auth.User", is_staff=True)),
        lambda: Actor(source=Source.API, label="agent-7"),
        lambda: Actor(
            source=Source.ADMIN,
            user=baker.make(
                "auth.User",
                is_active=False,
                groups=[Group.objects.get(name="Approvers")],
            ),
        ),
    ],
    ids=["staff-without-permission", "anonymous-agent", "inactive-approver"],
)
def test_deciding_or_archiving_without_permission_is_refused(actor, make_approval):
    pending, approved = make_approval(), make_approval(status=Status.APPROVED)

    with pytest.raises(NotPermitted):
        services.decide(pending.pk, "approve", actor=actor())
    with pytest.raises(NotPermitted):
        services.archive(approved.pk, actor=actor())

    assert not AuditEvent.objects.exists()


def test_unknown_request_or_decision_is_refused(make_approval, approver_actor):
    with pytest.raises(NotFound):
        services.decide("3f2a9c1b-0000-0000-0000-000000000000", "approve", actor=approver_actor)
    with pytest.raises(NotFound):
        services.decide("not-a-uuid", "approve", actor=approver_actor)
    with pytest.raises(InvalidInput):
        services.decide(make_approval().pk, "maybe", actor=approver_actor)
    assert not AuditEvent.objects.exists()


def test_approvers_group_from_the_data_migration_holds_the_permissions():
    codenames = set(
        Group.objects.get(name="Approvers").permissions.values_list("codename", flat=True)
    )

    assert {"decide_approvalrequest", "archive_approvalrequest"} <= codenames
    assert Permission.objects.filter(codename="force_release_claim").exists()
    assert "force_release_claim" not in codenames


def test_request_is_created_pending_with_its_expiry(settings, agent_actor):
    settings.APPROVAL_EXPIRY = 600

    approval = services.request_approval(
        kind="command",
        text="  Run migrate on production  ",
        agent_id="deploy-bot",
        payload={"command": "migrate"},
        actor=agent_actor,
    )

    assert (approval.status, approval.text) == (Status.PENDING, "Run migrate on production")
    assert (approval.requested_by, approval.requester) == (
        "agent-owner",
        "agent-owner (deploy-bot)",
    )
    assert approval.requested_by_user == agent_actor.user
    assert 590 <= (approval.expires_at - approval.created_at).total_seconds() <= 600
    assert events(approval) == ["approval.requested"]


@pytest.mark.parametrize(
    ("changes", "bad_field"),
    [
        ({"kind": "wish"}, "kind"),
        ({"text": " "}, "text"),
        ({"text": "x" * 4001}, "text"),
        ({"agent_id": "x" * 151}, "agent_id"),
        ({"payload": ["not", "an", "object"]}, "payload"),
    ],
)
def test_bad_request_is_refused_and_nothing_is_written(changes, bad_field, agent_actor):
    request = {"kind": "command", "text": "Run migrate", "agent_id": "deploy-bot", **changes}

    with pytest.raises(InvalidInput) as invalid:
        services.request_approval(**request, actor=agent_actor)

    assert bad_field in invalid.value.fields
    assert not ApprovalRequest.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("claim_id", [424242, "abc"])
def test_an_unknown_claim_is_not_found(claim_id, agent_actor):
    with pytest.raises(NotFound):
        services.request_approval(kind="claim", text="go?", claim_id=claim_id, actor=agent_actor)

    assert not ApprovalRequest.objects.exists()


def test_a_request_needs_a_checked_user():
    with pytest.raises(InvalidInput) as invalid:
        services.request_approval(
            kind="command", text="go?", actor=Actor(source=Source.CLI, label="admin")
        )

    assert "user" in invalid.value.fields


def test_scheduled_expiry_moves_overdue_requests_to_expired(make_approval):
    overdue = make_approval(expires_in=-timedelta(seconds=1))
    overdue_postponed = make_approval(status=Status.POSTPONED, expires_in=-timedelta(hours=2))
    due_later = make_approval()
    decided = make_approval(status=Status.APPROVED, expires_in=-timedelta(hours=1))

    assert tasks.expire_approvals() == 2
    assert tasks.expire_approvals() == 0

    statuses = {a.pk: a.status for a in ApprovalRequest.objects.all()}
    assert statuses == {
        overdue.pk: Status.EXPIRED,
        overdue_postponed.pk: Status.EXPIRED,
        due_later.pk: Status.PENDING,
        decided.pk: Status.APPROVED,
    }
    expired_events = AuditEvent.objects.filter(action="approval.expired")
    assert {e.object_id for e in expired_events} == {str(overdue.pk), str(overdue_postponed.pk)}
    assert {e.source for e in expired_events} == {"system"}
