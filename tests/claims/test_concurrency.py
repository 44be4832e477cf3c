"""Races settled by PostgreSQL row locks: many clients at the same moment, one winner."""

import threading

import pytest
from django.db import connection
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidTransition
from claims import services
from claims.errors import ClaimConflict
from claims.models import Claim

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_together(*calls):
    """Run each call in its own thread and database connection, released at the same moment.

    Returns what each call returned or raised, in order.
    """
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except Exception as error:  # each result, error or not, is for the test to judge
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_eight_parallel_claimers_on_one_work_item_get_exactly_one_lease():
    users = [baker.make("auth.User", username=f"owner-{n}") for n in range(8)]

    def claimer(n):
        return lambda: services.claim(
            story="checkout",
            todolist="payment-form",
            agent_id=f"agent-{n}",
            fingerprint=f"fp-{n}",
            ttl_seconds=300,
            actor=Actor(source=Source.API, user=users[n], label=f"agent-{n}"),
        )

    results = run_together(*(claimer(n) for n in range(8)))

    granted = [r for r in results if isinstance(r, services.Granted)]
    conflicts = [r for r in results if isinstance(r, ClaimConflict)]
    assert len(granted) == 1, results
    assert len(conflicts) == 7, results
    claim = Claim.objects.get()
    assert claim.agent_id == granted[0].claim.agent_id
    assert claim.version == 1
    assert AuditEvent.objects.filter(action="claim.acquired").count() == 1
    # Each refused claimer is counted once, whatever the race.
    assert AuditEvent.objects.filter(action="claim.conflict").count() == 7
    assert AuditEvent.objects.count() == 8
    assert {c.context["holder"]["agent_id"] for c in conflicts} == {claim.agent_id}


def test_concurrent_approve_and_deny_have_exactly_one_winner(make_approval, approver_actor):
    approval = make_approval()

    results = run_together(
        lambda: services.decide(approval.pk, "approve", actor=approver_actor),
        lambda: services.decide(approval.pk, "deny", actor=approver_actor),
    )

    winners = [r for r in results if isinstance(r, services.Decided)]
    losers = [r for r in results if isinstance(r, InvalidTransition)]
    assert len(winners) == 1 and len(losers) == 1, results
    approval.refresh_from_db()
    assert approval.status == winners[0].approval.status
    assert losers[0].status == approval.status
    assert AuditEvent.objects.filter(object_id=str(approval.pk)).count() == 1


def test_concurrent_identical_approvals_write_one_event(make_approval, approver_actor):
    approval = make_approval()

    results = run_together(
        *(lambda: services.decide(approval.pk, "approve", actor=approver_actor) for _ in range(4))
    )

    assert all(isinstance(r, services.Decided) for r in results), results
    assert sorted(r.changed for r in results) == [False, False, False, True]
    assert (
        AuditEvent.objects.filter(object_id=str(approval.pk), action="approval.approved").count()
        == 1
    )


@pytest.fixture
def quorum_of_two(make_policy, release_managers, agent_actor):
    make_policy(name="Two approvers", kind="manifest", quorum=2, approver_groups=[release_managers])
    return services.request_approval(kind="manifest", text="Release 2.4", actor=agent_actor)


def test_two_approvers_pressing_at_once_give_one_decision(quorum_of_two, manager_actor):
    results = run_together(
        lambda: services.decide(quorum_of_two.pk, "approve", actor=manager_actor("alice")),
        lambda: services.decide(quorum_of_two.pk, "approve", actor=manager_actor("bob")),
    )

    assert all(isinstance(r, services.Decided) and r.changed for r in results), results
    assert sorted(r.approval.status for r in results) == ["approved", "pending"]
    quorum_of_two.refresh_from_db()
    assert quorum_of_two.status == "approved"
    assert quorum_of_two.votes.count() == 2
    actions = AuditEvent.objects.filter(object_id=str(quorum_of_two.pk)).values_list(
        "action", flat=True
    )
    assert sorted(actions) == ["approval.approved", "approval.requested", "approval.voted"]


def test_two_of_three_with_a_concurrent_last_vote_decide_once(quorum_of_two, manager_actor):
    services.decide(quorum_of_two.pk, "approve", actor=manager_actor("alice"))

    results = run_together(
        lambda: services.decide(quorum_of_two.pk, "approve", actor=manager_actor("bob")),
        lambda: services.decide(quorum_of_two.pk, "approve", actor=manager_actor("carol")),
    )

    assert sorted(r.changed for r in results) == [False, True], results
    quorum_of_two.refresh_from_db()
    assert quorum_of_two.status == "approved"
    assert quorum_of_two.votes.count() == 2
    assert AuditEvent.objects.filter(action="approval.approved").count() == 1
