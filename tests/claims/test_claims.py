from datetime import timedelta

import pytest
from django.utils import timezone
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput, NotFound, NotPermitted
from claims import services
from claims.errors import ClaimConflict, Frozen, NotHolder, StaleFence
from claims.lease_tokens import hash_lease_token
from claims.models import Claim

pytestmark = pytest.mark.django_db


def user_named(username):
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=username)
    return user


def actor_for(agent, username=None):
    return Actor(source=Source.API, user=user_named(username or f"owner-of-{agent}"), label=agent)


def claim_as(agent, *, ttl=300, story="checkout", todolist="payment-form", **extra):
    return services.claim(
        story=story,
        todolist=todolist,
        agent_id=agent,
        fingerprint=f"{agent}-fp",
        ttl_seconds=ttl,
        actor=actor_for(agent),
        **extra,
    )


def expire(claim):
    Claim.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    claim.refresh_from_db()


def actions(claim):
    return list(
        AuditEvent.objects.filter(object_type="claims.claim", object_id=str(claim.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def test_first_claimer_is_granted_the_lease_with_a_token_and_fencing_token_1():
    granted = claim_as("builder-7", ttl=120)

    assert granted.outcome == "acquired"
    claim = granted.claim
    assert (claim.owner, claim.agent_id, claim.version) == ("owner-of-builder-7", "builder-7", 1)
    assert claim.owner_user.username == "owner-of-builder-7"
    assert claim.holder == "owner-of-builder-7 (builder-7)"
    assert claim.fencing_token == 1
    assert granted.lease_token.startswith("clt_")
    assert claim.lease_token_hash == hash_lease_token(granted.lease_token)
    assert granted.lease_token not in claim.lease_token_hash
    assert claim.is_live()
    assert 115 <= claim.seconds_left() <= 120
    assert actions(claim) == ["claim.acquired"]


def test_a_lease_needs_a_checked_user():
    with pytest.raises(InvalidInput) as invalid:
        services.claim(
            story="s", todolist="t", agent_id="a", actor=Actor(source=Source.API, label="admin")
        )

    assert "user" in invalid.value.fields
    assert not Claim.objects.exists()


def test_holder_claiming_again_with_its_token_refreshes_its_lease():
    first = claim_as("builder-7", ttl=60)

    again = claim_as("builder-7", ttl=600, lease_token=first.lease_token)

    assert again.outcome == "refreshed"
    assert again.lease_token == ""
    assert again.claim.pk == first.claim.pk
    assert again.claim.version == 2
    assert again.claim.fencing_token == 1
    assert again.claim.expires_at > first.claim.expires_at
    assert actions(again.claim) == ["claim.acquired", "claim.refreshed"]


def test_same_agent_id_without_the_token_is_a_conflict_like_any_other():
    claim_as("builder-7")

    with pytest.raises(ClaimConflict):
        claim_as("builder-7")


def test_copied_agent_id_and_fingerprint_with_a_guessed_token_is_refused_and_audited():
    held = claim_as("builder-7").claim
    thief = Actor(source=Source.API, user=user_named("mallory"), label="builder-7")

    with pytest.raises(NotHolder):
        services.claim(
            story="checkout",
            todolist="payment-form",
            agent_id="builder-7",
            fingerprint="builder-7-fp",
            lease_token="clt_guessed-guessed-guessed-guessed",
            actor=thief,
        )

    refused = AuditEvent.objects.get(action="claim.refused")
    assert refused.actor.username == "mallory"
    assert refused.actor_label == "mallory (builder-7)"
    assert refused.details["operation"] == "claim"
    held.refresh_from_db()
    assert held.version == 1


def test_live_lease_of_another_holder_conflicts_naming_holder_and_expiry():
    held = claim_as("builder-7").claim

    with pytest.raises(ClaimConflict) as conflict:
        claim_as("builder-8")

    assert conflict.value.context["holder"] == {
        "owner": "owner-of-builder-7",
        "agent_id": "builder-7",
    }
    assert conflict.value.context["expires_at"].endswith("Z")
    assert "owner-of-builder-7 (builder-7)" in conflict.value.message
    held.refresh_from_db()
    assert held.version == 1
    audited = AuditEvent.objects.get(action="claim.conflict")
    assert (audited.actor_label, audited.object_id) == (
        "owner-of-builder-8 (builder-8)",
        str(held.pk),
    )
    assert audited.details["operation"] == "claim"


def test_expired_lease_is_taken_over_by_next_claimer_with_the_next_fencing_token():
    first = claim_as("builder-7")
    expire(first.claim)

    taken = claim_as("builder-8")

    assert taken.outcome == "taken_over"
    claim = taken.claim
    assert (claim.agent_id, claim.previous_agent_id) == ("builder-8", "builder-7")
    assert claim.fencing_token == 2
    assert claim.takeovers == 1
    assert taken.lease_token != first.lease_token
    assert actions(claim) == ["claim.acquired", "claim.taken_over"]


def test_fencing_token_keeps_growing_across_release_and_takeover():
    tokens = []
    for agent in ("a", "b", "c"):
        granted = claim_as(agent)
        tokens.append(granted.claim.fencing_token)
        services.release(granted.claim.pk, lease_token=granted.lease_token, actor=actor_for(agent))

    assert tokens == [1, 2, 3]


def test_stale_fencing_token_is_refused_after_a_takeover_and_audited():
    first = claim_as("builder-7")
    expire(first.claim)
    claim_as("builder-8")

    with pytest.raises(StaleFence) as stale:
        services.refresh(
            first.claim.pk,
            lease_token=first.lease_token,
            fencing_token=1,
            actor=actor_for("builder-7"),
        )
    with pytest.raises(StaleFence):
        services.check_fence(
            story="checkout", todolist="payment-form", fencing_token=1, actor=actor_for("deploy")
        )

    assert stale.value.context["fencing_token"] == 2
    assert AuditEvent.objects.filter(action="claim.refused").count() == 2
    current = services.check_fence(
        story="checkout", todolist="payment-form", fencing_token=2, actor=actor_for("deploy")
    )
    assert current.agent_id == "builder-8"


def test_check_of_a_released_lease_is_stale():
    granted = claim_as("builder-7")
    services.release(granted.claim.pk, lease_token=granted.lease_token, actor=actor_for("x"))

    with pytest.raises(StaleFence):
        services.check_fence(
            story="checkout", todolist="payment-form", fencing_token=1, actor=actor_for("deploy")
        )


def test_released_lease_is_acquired_by_next_claimer():
    first = claim_as("builder-7")
    services.release(first.claim.pk, lease_token=first.lease_token, actor=actor_for("builder-7"))

    again = claim_as("builder-8")

    assert again.outcome == "acquired"
    assert again.claim.fencing_token == 2


@pytest.mark.parametrize("operation", ["refresh", "release"])
@pytest.mark.parametrize("proof", ["builder-7", "builder-7-fp", "", "clt_not-the-token-at-all-x"])
def test_agent_id_or_fingerprint_is_no_proof(operation, proof):
    held = claim_as("builder-7").claim
    thief = Actor(source=Source.API, user=user_named("mallory"), label="builder-7")
    change = getattr(services, operation)

    with pytest.raises((NotHolder, InvalidInput)):
        change(held.pk, lease_token=proof, actor=thief)

    held.refresh_from_db()
    assert held.version == 1 and held.is_live()
    if proof:
        event = AuditEvent.objects.get(action="claim.refused")
        assert (event.actor.username, event.details["operation"]) == ("mallory", operation)


def test_refresh_without_ttl_keeps_the_current_ttl():
    granted = claim_as("builder-7", ttl=600)

    claim = services.refresh(
        granted.claim.pk, lease_token=granted.lease_token, actor=actor_for("builder-7")
    )

    assert claim.ttl_seconds == 600
    assert claim.seconds_left() > 590


def test_release_ends_the_lease_once():
    granted = claim_as("builder-7")

    for _ in range(2):
        claim = services.release(
            granted.claim.pk, lease_token=granted.lease_token, actor=actor_for("builder-7")
        )

    assert claim.released_at is not None
    assert actions(claim) == ["claim.acquired", "claim.released"]


def test_released_lease_cannot_be_refreshed():
    granted = claim_as("builder-7")
    services.release(granted.claim.pk, lease_token=granted.lease_token, actor=actor_for("x"))

    with pytest.raises(NotHolder):
        services.refresh(granted.claim.pk, lease_token=granted.lease_token, actor=actor_for("x"))


def test_lease_granted_before_tokens_existed_cannot_be_refreshed_but_expires():
    held = claim_as("builder-7").claim
    Claim.objects.filter(pk=held.pk).update(lease_token_hash="")

    with pytest.raises(NotHolder):
        services.release(
            held.pk, lease_token="clt_anything-anything-anything", actor=actor_for("a")
        )
    with pytest.raises(ClaimConflict):
        claim_as("builder-7")
    expire(held)
    assert claim_as("builder-8").outcome == "taken_over"


def test_force_release_needs_the_permission(approver_actor):
    held = claim_as("builder-7").claim

    with pytest.raises(NotPermitted):
        services.force_release(held.pk, actor=approver_actor, reason="stuck")

    held.refresh_from_db()
    assert held.released_at is None


def test_force_release_needs_a_reason_and_is_audited_with_it(supervisor, supervisor_actor):
    held = claim_as("builder-7").claim

    with pytest.raises(InvalidInput):
        services.force_release(held.pk, actor=supervisor_actor, reason=" ")
    released = services.force_release(held.pk, actor=supervisor_actor, reason="agent crashed")

    assert released.changed
    event = AuditEvent.objects.get(action="claim.force_released")
    assert (event.actor, event.details["note"]) == (supervisor, "agent crashed")


def test_take_over_gives_the_lease_and_a_token_to_the_staff_user(supervisor, supervisor_actor):
    held = claim_as("builder-7").claim

    granted = services.take_over(held.pk, actor=supervisor_actor, reason="hot fix")

    claim = granted.claim
    assert (claim.owner, claim.previous_owner, claim.fencing_token) == (
        "supervisor",
        "owner-of-builder-7",
        2,
    )
    assert claim.proves(granted.lease_token)
    event = AuditEvent.objects.get(action="claim.taken_over")
    assert (event.actor, event.details["note"]) == (supervisor, "hot fix")


def test_frozen_work_item_cannot_be_claimed_until_unfrozen(supervisor_actor):
    granted = claim_as("builder-7")
    services.release(granted.claim.pk, lease_token=granted.lease_token, actor=actor_for("x"))
    services.freeze(granted.claim.pk, actor=supervisor_actor, reason="audit in progress")

    with pytest.raises(Frozen) as frozen:
        claim_as("builder-8")

    assert frozen.value.context["reason"] == "audit in progress"
    services.unfreeze(granted.claim.pk, actor=supervisor_actor)
    assert claim_as("builder-8").outcome == "acquired"


@pytest.mark.parametrize(
    ("changes", "bad_field"),
    [
        ({"agent_id": ""}, "agent_id"),
        ({"story": ""}, "story"),
        ({"agent_id": "x" * 151}, "agent_id"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": -5}, "ttl_seconds"),
        ({"ttl_seconds": 10**12}, "ttl_seconds"),
        ({"ttl_seconds": "60"}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
        ({"wait": -1}, "wait"),
    ],
)
def test_bad_claim_input_is_refused_and_nothing_is_written(changes, bad_field):
    request = {
        "story": "checkout",
        "todolist": "payment-form",
        "agent_id": "builder-7",
        "fingerprint": "fp",
        "ttl_seconds": 60,
        **changes,
    }

    with pytest.raises(InvalidInput) as invalid:
        services.claim(**request, actor=actor_for("builder-7"))

    assert bad_field in invalid.value.fields
    assert not Claim.objects.exists()
    assert not AuditEvent.objects.exists()


def test_huge_ttl_is_refused_on_refresh(settings):
    settings.CLAIM_MAX_TTL = 3600
    granted = claim_as("builder-7")

    with pytest.raises(InvalidInput) as invalid:
        services.refresh(
            granted.claim.pk,
            lease_token=granted.lease_token,
            ttl_seconds=3601,
            actor=actor_for("builder-7"),
        )

    assert "3600" in invalid.value.fields["ttl_seconds"]
    granted.claim.refresh_from_db()
    assert granted.claim.version == 1


@pytest.mark.parametrize("claim_id", [999999, "abc", None, -1, 10**30])
def test_unknown_claim_is_not_found_and_nothing_is_written(claim_id, supervisor_actor):
    baker.make(Claim, expires_at=timezone.now(), acquired_at=timezone.now(), ttl_seconds=1)
    actor = actor_for("a")

    for change in (
        lambda: services.refresh(claim_id, lease_token="clt_x", actor=actor),
        lambda: services.release(claim_id, lease_token="clt_x", actor=actor),
        lambda: services.force_release(claim_id, actor=supervisor_actor, reason="r"),
        lambda: services.take_over(claim_id, actor=supervisor_actor, reason="r"),
        lambda: services.freeze(claim_id, actor=supervisor_actor, reason="r"),
    ):
        with pytest.raises(NotFound):
            change()

    assert not AuditEvent.objects.exists()
