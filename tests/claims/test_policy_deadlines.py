"""What the scheduler does under a policy: default outcomes, reminders and escalation, each once."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from backoffice.errors import NotPermitted
from claims import services, tasks
from claims.models import ApprovalPolicy, ApprovalRequest
from telegram_bridge.models import OutboundMessage

pytestmark = pytest.mark.django_db

Status = ApprovalRequest.Status
APPROVER_CHAT = -100200300
ESCALATION_CHAT = -100900900


@pytest.fixture(autouse=True)
def approver_chat(settings):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT


def ask(agent_actor, kind="command"):
    return services.request_approval(kind=kind, text="Flush the CDN cache", actor=agent_actor)


def later(approval, minutes):
    """Move every time of ``approval`` ``minutes`` into the past, as if that much time went by."""
    delta = timedelta(minutes=minutes)
    approval.refresh_from_db()
    fields = {"created_at": approval.created_at - delta, "expires_at": approval.expires_at - delta}
    for name in ("next_reminder_at", "escalate_at"):
        if getattr(approval, name) is not None:
            fields[name] = getattr(approval, name) - delta
    ApprovalRequest.objects.filter(pk=approval.pk).update(**fields)
    approval.refresh_from_db()
    return approval


def audited(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


# --- Default outcomes at the deadline ---------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "action"),
    [
        ("expire", Status.EXPIRED, "approval.expired"),
        ("deny", Status.DENIED, "approval.denied_by_default"),
        ("approve", Status.APPROVED, "approval.approved_by_default"),
    ],
)
def test_the_default_outcome_applies_at_the_deadline(
    outcome, status, action, make_policy, agent_actor
):
    make_policy(kind="command", deadline_minutes=30, default_outcome=outcome, low_risk=True)
    approval = ask(agent_actor)

    assert tasks.expire_approvals() == 0
    later(approval, 31)
    assert tasks.expire_approvals() == 1
    assert tasks.expire_approvals() == 0

    approval.refresh_from_db()
    assert approval.status == status
    assert approval.decided_by is None
    (event,) = audited(action)
    assert (event.source, event.actor, event.actor_label) == ("system", None, "expire_approvals")
    assert event.details["default_decision"] is (outcome != "expire")
    if outcome != "expire":
        assert approval.decision_source == "default"
        assert "default outcome" in approval.decision_note


def test_approve_if_no_objection_expires_a_request_someone_denied(
    make_policy, release_managers, manager_actor, agent_actor
):
    make_policy(
        kind="command", quorum=2, deny_needs_quorum=True, deadline_minutes=30,
        default_outcome="approve", low_risk=True, approver_groups=[release_managers],
    )  # fmt: skip
    objected, postponed = ask(agent_actor), ask(agent_actor)
    services.decide(objected.pk, "deny", actor=manager_actor("alice"))
    services.decide(postponed.pk, "postpone", actor=manager_actor("bob"))
    later(objected, 31), later(postponed, 31)

    assert tasks.expire_approvals() == 2

    assert set(ApprovalRequest.objects.values_list("status", flat=True)) == {Status.EXPIRED}
    assert not audited("approval.approved_by_default")


def test_a_policy_no_longer_low_risk_keeps_open_requests_as_they_were_asked(
    make_policy, agent_actor
):
    policy = make_policy(
        kind="command", deadline_minutes=30, default_outcome="approve", low_risk=True
    )
    approval = ask(agent_actor)
    ApprovalPolicy.objects.filter(pk=policy.pk).update(low_risk=False, default_outcome="expire")
    later(approval, 31)

    tasks.expire_approvals()

    approval.refresh_from_db()
    assert approval.status == Status.APPROVED


# --- Reminders --------------------------------------------------------------------------------


def reminders():
    return list(OutboundMessage.objects.filter(dedupe_key__contains=":reminder:"))


def test_each_reminder_is_sent_once_however_often_the_scheduler_runs(make_policy, agent_actor):
    make_policy(kind="command", deadline_minutes=60, reminder_fractions="0.5, 0.75")
    approval = ask(agent_actor)

    assert tasks.follow_up_approvals() == {"reminded": 0, "escalated": 0}
    later(approval, 31)
    assert tasks.follow_up_approvals() == {"reminded": 1, "escalated": 0}
    assert tasks.follow_up_approvals() == {"reminded": 0, "escalated": 0}
    assert len(reminders()) == 1
    later(approval, 15)
    assert tasks.follow_up_approvals()["reminded"] == 1
    assert tasks.follow_up_approvals()["reminded"] == 0

    sent = reminders()
    assert [m.chat_id for m in sent] == [APPROVER_CHAT, APPROVER_CHAT]
    assert all("Reminder" in m.payload["text"] for m in sent)
    assert all(m.payload["reply_markup"]["inline_keyboard"] for m in sent)
    assert [e.details["reminder"] for e in audited("approval.reminded")] == [1, 2]
    approval.refresh_from_db()
    assert (approval.reminders_sent, approval.next_reminder_at) == (2, None)


def test_reminders_missed_while_the_scheduler_was_down_are_one_reminder(make_policy, agent_actor):
    make_policy(kind="command", deadline_minutes=60, reminder_fractions="0.25, 0.5, 0.75")
    approval = ask(agent_actor)
    later(approval, 50)

    tasks.follow_up_approvals()
    tasks.follow_up_approvals()

    assert len(reminders()) == 1
    approval.refresh_from_db()
    assert approval.reminders_sent == 3


def test_no_reminder_for_a_decided_request(make_policy, agent_actor, approver_actor):
    make_policy(kind="command", deadline_minutes=60, reminder_fractions="0.5")
    approval = ask(agent_actor)
    services.decide(approval.pk, "approve", actor=approver_actor)
    later(approval, 45)

    assert tasks.follow_up_approvals()["reminded"] == 0
    assert reminders() == []


# --- Escalation -------------------------------------------------------------------------------


@pytest.fixture
def on_call(db):
    """The escalation group: one lead who may decide requests, linked to Telegram."""
    group = Group.objects.create(name="On call")
    lead = baker.make("auth.User", username="lead", is_staff=True, is_active=True)
    lead.groups.add(group, Group.objects.get(name="Approvers"))
    baker.make("telegram_bridge.TelegramAccount", telegram_user_id=4242, user=lead)
    return group


def test_escalation_fires_once_and_widens_the_eligible_approvers(
    make_policy, release_managers, manager_actor, on_call, agent_actor
):
    make_policy(
        kind="command", quorum=2, deadline_minutes=60, approver_groups=[release_managers],
        escalate_after_minutes=20, escalation_group=on_call,
        escalation_chat_id=ESCALATION_CHAT, widen_on_escalation=True,
    )  # fmt: skip
    approval = ask(agent_actor)
    lead = Actor(source=Source.ADMIN, user=on_call.user_set.get())
    services.decide(approval.pk, "approve", actor=manager_actor("alice"))
    with pytest.raises(NotPermitted):
        services.decide(approval.pk, "approve", actor=lead)

    later(approval, 21)
    assert tasks.follow_up_approvals() == {"reminded": 0, "escalated": 1}
    assert tasks.follow_up_approvals() == {"reminded": 0, "escalated": 0}

    messages = OutboundMessage.objects.filter(dedupe_key__contains=":escalated:")
    assert sorted(m.chat_id for m in messages) == [ESCALATION_CHAT, 4242]
    assert all("Escalated" in m.payload["text"] for m in messages)
    assert all("reply_markup" in m.payload for m in messages)
    (event,) = audited("approval.escalated")
    assert event.details["widened"] is True
    assert event.details["tally"]["summary"] == "1 of 2 approvals, waiting for bob, carol, lead"
    decided = services.decide(approval.pk, "approve", actor=lead)
    assert decided.approval.status == Status.APPROVED


def test_escalation_without_widening_only_tells(
    make_policy, release_managers, on_call, agent_actor
):
    make_policy(
        kind="command", deadline_minutes=60, approver_groups=[release_managers],
        escalate_after_minutes=20, escalation_group=on_call,
    )  # fmt: skip
    approval = ask(agent_actor)
    later(approval, 25)

    tasks.follow_up_approvals()

    (message,) = OutboundMessage.objects.filter(dedupe_key__contains=":escalated:")
    assert message.chat_id == 4242
    assert "reply_markup" not in message.payload
    with pytest.raises(NotPermitted):
        services.decide(
            approval.pk, "approve", actor=Actor(Source.ADMIN, user=on_call.user_set.get())
        )
