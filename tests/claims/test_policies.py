"""Approval policies: which one applies, quorum and veto, who may vote, and the votes themselves."""

import pytest
from django.contrib.auth.models import Group
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput, InvalidTransition, NotPermitted
from claims import services
from claims.models import ApprovalPolicy, ApprovalRequest, Vote
from claims.policies import Rules

pytestmark = pytest.mark.django_db

Status = ApprovalRequest.Status


@pytest.fixture
def root():
    """A superuser, who may manage policies."""
    admin = baker.make("auth.User", username="root", is_superuser=True, is_active=True)
    return Actor(source=Source.ADMIN, user=admin)


def ask(actor, kind="manifest", story="", **fields):
    payload = {"story": story} if story else None
    return services.request_approval(
        kind=kind, text="Release 2.4 to production",
        payload=payload, actor=actor, **fields,
    )  # fmt: skip


def actions(approval):
    return list(
        AuditEvent.objects.filter(object_id=str(approval.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- Which policy applies --------------------------------------------------------------------


def test_the_most_specific_policy_applies(make_policy, agent_actor):
    make_policy(name="Manifests", kind="manifest", quorum=2)
    make_policy(name="Release manifests", kind="manifest", story_pattern="release-*", quorum=3)
    make_policy(name="Release stories", story_pattern="release-*", quorum=4)
    make_policy(name="Release 2026", story_pattern="release-2026*", quorum=5)

    def policy_of(kind, story):
        return Rules.from_request(ask(agent_actor, kind, story)).policy

    assert policy_of("manifest", "release-2026-03") == "Release manifests"
    assert policy_of("manifest", "checkout") == "Manifests"
    assert policy_of("command", "release-2026-03") == "Release 2026"
    assert policy_of("command", "release-2025") == "Release stories"
    assert policy_of("command", "checkout") == "Default"


def test_the_story_comes_from_the_linked_claim(make_policy, agent_actor):
    make_policy(name="Release stories", story_pattern="release-*", quorum=2)
    claim = services.claim(
        story="release-9", todolist="deploy", agent_id="a-1", actor=agent_actor
    ).claim

    approval = ask(agent_actor, kind="claim", claim_id=claim.pk)

    assert Rules.from_request(approval).policy == "Release stories"
    assert approval.policy.name == "Release stories"


def test_without_any_policy_the_built_in_default_is_todays_behaviour(settings, agent_actor):
    ApprovalPolicy.objects.all().delete()
    settings.APPROVAL_EXPIRY = 600

    approval = ask(agent_actor)
    rules = Rules.from_request(approval)

    assert (rules.policy, rules.quorum, rules.requester_may_approve) == ("", 1, True)
    assert (rules.default_outcome, rules.reminders, rules.escalate_after_seconds) == (
        "expire",
        (),
        None,
    )
    assert 590 <= (approval.expires_at - approval.created_at).total_seconds() <= 600


def test_the_policy_is_copied_onto_the_request_when_it_is_made(
    make_policy, release_managers, manager_actor, agent_actor, root
):
    policy = make_policy(kind="manifest", quorum=2, approver_groups=[release_managers])
    approval = ask(agent_actor)
    policy.quorum = 1
    services.save_policy(policy, approver_groups=[release_managers], actor=root)

    services.decide(approval.pk, "approve", actor=manager_actor("alice"))
    approval.refresh_from_db()

    assert approval.status == Status.PENDING
    assert approval.rules["quorum"] == 2
    assert ask(agent_actor).rules["quorum"] == 1


def test_deadline_reminders_and_escalation_are_scheduled_from_the_policy(make_policy, agent_actor):
    make_policy(
        kind="manifest", deadline_minutes=60, reminder_fractions="0.9, 0.5",
        escalate_after_minutes=40,
    )  # fmt: skip

    approval = ask(agent_actor)
    asked = approval.expires_at.timestamp() - 3600

    assert approval.next_reminder_at.timestamp() == pytest.approx(asked + 1800)
    assert approval.escalate_at.timestamp() == pytest.approx(asked + 2400)
    assert Rules.from_request(approval).reminders == (0.5, 0.9)


# --- Quorum, veto and votes -------------------------------------------------------------------


@pytest.fixture
def two_of_three(make_policy, release_managers, agent_actor):
    make_policy(kind="manifest", quorum=2, approver_groups=[release_managers])
    return ask(agent_actor)


def test_two_of_three_approvals_approve_the_request(two_of_three, manager_actor):
    first = services.decide(two_of_three.pk, "approve", actor=manager_actor("alice"))

    assert (first.changed, first.approval.status) == (True, Status.PENDING)
    assert first.tally.summary() == "1 of 2 approvals, waiting for bob, carol"

    second = services.decide(two_of_three.pk, "approve", actor=manager_actor("bob"), note="ok")

    assert (second.changed, second.approval.status) == (True, Status.APPROVED)
    assert second.approval.decided_by.username == "bob"
    assert second.tally.summary() == "2 of 2 approvals"
    assert actions(two_of_three) == ["approval.requested", "approval.voted", "approval.approved"]
    decision = AuditEvent.objects.get(action="approval.approved")
    assert [v["voter"] for v in decision.details["votes"]] == ["alice", "bob"]


def test_no_vote_counts_once_the_request_is_decided(two_of_three, manager_actor):
    for name in ("alice", "bob"):
        services.decide(two_of_three.pk, "approve", actor=manager_actor(name))

    late = services.decide(two_of_three.pk, "approve", actor=manager_actor("carol"))
    with pytest.raises(InvalidTransition):
        services.decide(two_of_three.pk, "deny", actor=manager_actor("carol"))

    assert late.changed is False
    assert Vote.objects.filter(approval=two_of_three).count() == 2


def test_one_deny_vetoes_the_request(two_of_three, manager_actor):
    services.decide(two_of_three.pk, "approve", actor=manager_actor("alice"))

    vetoed = services.decide(two_of_three.pk, "deny", actor=manager_actor("bob"))

    assert vetoed.approval.status == Status.DENIED
    assert actions(two_of_three)[-1] == "approval.denied"


def test_a_deny_needs_the_quorum_when_the_policy_says_so(
    make_policy, release_managers, manager_actor, agent_actor
):
    make_policy(
        kind="manifest", quorum=2, deny_needs_quorum=True, approver_groups=[release_managers]
    )
    approval = ask(agent_actor)

    first = services.decide(approval.pk, "deny", actor=manager_actor("alice"))
    second = services.decide(approval.pk, "deny", actor=manager_actor("bob"))

    assert first.approval.status == Status.PENDING
    assert first.tally.summary() == "0 of 2 approvals, 1 of 2 denials, waiting for bob, carol"
    assert second.approval.status == Status.DENIED


def test_a_vote_can_be_changed_until_the_request_is_decided(
    make_policy, release_managers, manager_actor, agent_actor
):
    make_policy(
        kind="manifest", quorum=2, deny_needs_quorum=True, approver_groups=[release_managers]
    )
    approval = ask(agent_actor)
    alice = manager_actor("alice")

    services.decide(approval.pk, "approve", actor=alice)
    repeated = services.decide(approval.pk, "approve", actor=alice)
    changed = services.decide(approval.pk, "deny", actor=alice)

    assert repeated.changed is False
    assert (changed.changed, changed.tally.approvals, changed.tally.denials) == (True, 0, 1)
    assert Vote.objects.get(approval=approval).choice == "deny"
    voted = AuditEvent.objects.filter(action="approval.voted").order_by("id")
    assert [(e.details["choice"], e.details["previous_choice"]) for e in voted] == [
        ("approve", ""),
        ("deny", "approve"),
    ]


# --- Who may vote -----------------------------------------------------------------------------


def test_the_requester_may_not_vote_under_separation_of_duties(
    two_of_three, release_managers, manager_actor
):
    alice = manager_actor("alice").user
    two_of_three.requested_by_user = alice
    two_of_three.save()

    with pytest.raises(NotPermitted, match="made yourself"):
        services.decide(two_of_three.pk, "approve", actor=manager_actor("alice"))

    counted = services.decide(two_of_three.pk, "approve", actor=manager_actor("bob")).tally
    assert counted.waiting_for == ("carol",)
    assert not Vote.objects.filter(voter=alice).exists()


def test_the_requester_may_vote_when_the_policy_allows_it(
    make_policy, release_managers, manager_actor
):
    make_policy(kind="command", requester_may_approve=True, approver_groups=[release_managers])
    alice = manager_actor("alice")
    approval = ask(alice, kind="command")

    assert approval.requested_by_user == alice.user
    assert services.decide(approval.pk, "approve", actor=alice).approval.status == Status.APPROVED


def test_only_members_of_the_eligible_groups_may_vote(two_of_three, approver_actor):
    with pytest.raises(NotPermitted, match="Release managers"):
        services.decide(two_of_three.pk, "approve", actor=approver_actor)
    with pytest.raises(NotPermitted, match="Release managers"):
        services.decide(two_of_three.pk, "postpone", actor=approver_actor)

    assert actions(two_of_three) == ["approval.requested"]


def test_a_vote_needs_the_permission_to_decide(two_of_three, release_managers):
    outsider = baker.make("auth.User", username="dave", is_active=True)
    outsider.groups.add(release_managers)

    with pytest.raises(NotPermitted):
        services.decide(two_of_three.pk, "approve", actor=Actor(source=Source.API, user=outsider))


# --- Managing policies ------------------------------------------------------------------------


def test_policy_changes_are_audited(release_managers, root):
    actor = root
    policy = ApprovalPolicy(name="Releases", kind="manifest", quorum=2)

    services.save_policy(policy, approver_groups=[release_managers], actor=actor)
    policy.quorum = 3
    services.save_policy(policy, approver_groups=[], actor=actor, changed=["quorum"])
    services.delete_policy(policy, actor=actor)

    events = AuditEvent.objects.filter(object_type="claims.approvalpolicy").order_by("id")
    assert [e.action for e in events] == ["policy.created", "policy.changed", "policy.deleted"]
    assert events[0].details["rules"]["approver_groups"] == [release_managers.pk]
    assert events[1].details["changed"] == ["quorum"]
    assert events[1].details["rules"]["quorum"] == 3
    assert {e.actor for e in events} == {root.user}


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"kind": "command", "default_outcome": "approve"}, "default_outcome"),
        ({"kind": "", "default_outcome": "approve", "low_risk": True}, "default_outcome"),
        ({"reminder_fractions": "half"}, "reminder_fractions"),
        ({"reminder_fractions": "0.5, 1.5"}, "reminder_fractions"),
        ({"widen_on_escalation": True, "escalate_after_minutes": 5}, "escalation_group"),
        ({"escalation_chat_id": -100, "escalate_after_minutes": None}, "escalate_after_minutes"),
        ({"quorum": 0}, "quorum"),
    ],
)
def test_an_inconsistent_policy_is_refused(fields, bad_field, root):
    policy = ApprovalPolicy(name="Odd", **{"kind": "command", **fields})

    with pytest.raises(InvalidInput) as invalid:
        services.save_policy(policy, approver_groups=[], actor=root)

    assert bad_field in invalid.value.fields
    assert not ApprovalPolicy.objects.filter(name="Odd").exists()
    assert not AuditEvent.objects.exists()


def test_managing_policies_needs_the_permission(approver_actor):
    with pytest.raises(NotPermitted):
        services.save_policy(
            ApprovalPolicy(name="Mine", kind="command"), approver_groups=[], actor=approver_actor
        )

    assert not Group.objects.filter(name="Mine").exists()
    assert not ApprovalPolicy.objects.filter(name="Mine").exists()
