from datetime import timedelta

import pytest
from django.utils import timezone
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput, NotFound, NotPermitted
from claims import services
from claims.errors import ClaimConflict, NotHolder
from claims.models import Claim

pytestmark = pytest.mark.django_db


def claim_as(agent, *, owner=None, ttl=300, story="checkout", todolist="payment-form"):
    return services.claim(
        story=story,
        todolist=todolist,
        owner=owner or f"owner-of-{agent}",
        agent_id=agent,
        fingerprint=f"{agent}-fp",
        ttl_seconds=ttl,
        actor=Actor(source=Source.API, label=agent),
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


def test_first_claimer_is_granted_the_lease():
    granted = claim_as("builder-7", ttl=120)

    assert granted.outcome == "acquired"
    claim = granted.claim
    assert (claim.owner, claim.agent_id, claim.version) == ("owner-of-builder-7", "builder-7", 1)
    assert claim.is_live()
    assert 115 <= claim.seconds_left() <= 120
    assert actions(claim) == ["claim.acquired"]


def test_holder_claiming_again_refreshes_its_lease():
    first = claim_as("builder-7", ttl=60).claim

    again = claim_as("builder-7", ttl=600)

    assert again.outcome == "refreshed"
    assert again.claim.pk == first.pk
    assert again.claim.version == 2
    assert again.claim.expires_at > first.expires_at
    assert actions(first) == ["claim.acquired", "claim.refreshed"]


def test_live_lease_of_another_holder_conflicts_naming_holder_and_expiry():
    held = claim_as("builder-7", owner="maria").claim

    with pytest.raises(ClaimConflict) as conflict:
        claim_as("builder-8", owner="tomasz")

    body = conflict.value.as_dict()
    assert body["error"] == "conflict"
    assert body["holder"] == {"owner": "maria", "agent_id": "builder-7"}
    assert body["expires_at"] == held.expires_at.isoformat()
    assert "maria" in body["detail"]
    held.refresh_from_db()
    assert (held.agent_id, held.version) == ("builder-7", 1)
    assert actions(held) == ["claim.acquired"]


def test_expired_lease_is_taken_over_by_next_claimer():
    held = claim_as("builder-7", owner="maria").claim
    expire(held)

    granted = claim_as("builder-8", owner="tomasz")

    claim = granted.claim
    assert granted.outcome == "taken_over"
    assert (claim.owner, claim.agent_id, claim.version) == ("tomasz", "builder-8", 2)
    assert (claim.previous_owner, claim.previous_agent_id) == ("maria", "builder-7")
    assert claim.is_live()
    assert actions(claim) == ["claim.acquired", "claim.taken_over"]
    event = AuditEvent.objects.get(action="claim.taken_over")
    assert event.details["previous_agent_id"] == "builder-7"


def test_released_lease_is_acquired_by_next_claimer():
    held = claim_as("builder-7").claim
    services.release(held.pk, agent_id="builder-7", actor=Actor(source=Source.API))

    granted = claim_as("builder-8")

    assert granted.outcome == "acquired"
    assert granted.claim.released_at is None
    assert granted.claim.agent_id == "builder-8"


@pytest.mark.parametrize(
    "proof", [{"agent_id": "builder-7"}, {"fingerprint": "builder-7-fp"}], ids=["agent", "fp"]
)
def test_holder_refreshes_with_agent_id_or_fingerprint(proof):
    held = claim_as("builder-7", ttl=60).claim

    claim = services.refresh(held.pk, ttl_seconds=900, actor=Actor(source=Source.API), **proof)

    assert claim.version == 2
    assert claim.ttl_seconds == 900
    assert actions(claim) == ["claim.acquired", "claim.refreshed"]


@pytest.mark.parametrize("change", [services.refresh, services.release], ids=["refresh", "release"])
def test_only_the_holder_refreshes_or_releases(change):
    held = claim_as("builder-7").claim

    with pytest.raises(NotHolder) as refused:
        change(
            held.pk, agent_id="builder-8", fingerprint="other-fp", actor=Actor(source=Source.API)
        )

    assert refused.value.context["holder"]["agent_id"] == "builder-7"
    held.refresh_from_db()
    assert (held.version, held.released_at) == (1, None)
    assert actions(held) == ["claim.acquired"]


def test_refresh_or_release_without_holder_identity_is_invalid():
    held = claim_as("builder-7").claim

    with pytest.raises(InvalidInput):
        services.refresh(held.pk, actor=Actor(source=Source.API))
    with pytest.raises(InvalidInput):
        services.release(held.pk, actor=Actor(source=Source.API))
    assert actions(held) == ["claim.acquired"]


def test_release_ends_the_lease_once():
    held = claim_as("builder-7").claim
    actor = Actor(source=Source.API)

    services.release(held.pk, fingerprint="builder-7-fp", actor=actor)
    claim = services.release(held.pk, agent_id="builder-7", actor=actor)

    assert claim.released_at is not None
    assert not claim.is_live()
    assert claim.version == 2
    assert actions(claim) == ["claim.acquired", "claim.released"]


def test_released_lease_cannot_be_refreshed():
    held = claim_as("builder-7").claim
    services.release(held.pk, agent_id="builder-7", actor=Actor(source=Source.API))

    with pytest.raises(NotHolder):
        services.refresh(held.pk, agent_id="builder-7", actor=Actor(source=Source.API))


def test_force_release_needs_the_permission(approver_actor):
    held = claim_as("builder-7").claim

    with pytest.raises(NotPermitted):
        services.force_release(held.pk, actor=approver_actor)
    with pytest.raises(NotPermitted):
        services.take_over(held.pk, actor=approver_actor)

    held.refresh_from_db()
    assert held.is_live()
    assert actions(held) == ["claim.acquired"]


def test_force_release_is_audited_with_the_staff_user(supervisor, supervisor_actor):
    held = claim_as("builder-7").claim

    claim, changed = services.force_release(held.pk, actor=supervisor_actor)

    assert changed and not claim.is_live()
    assert not services.force_release(held.pk, actor=supervisor_actor).changed
    event = AuditEvent.objects.get(action="claim.force_released")
    assert (event.actor, event.source, event.object_id) == (supervisor, "admin", str(held.pk))


def test_take_over_gives_the_lease_to_the_staff_user(supervisor, supervisor_actor):
    held = claim_as("builder-7", owner="maria").claim

    claim = services.take_over(held.pk, actor=supervisor_actor)

    assert (claim.owner, claim.previous_owner, claim.version) == ("supervisor", "maria", 2)
    assert claim.is_live()
    event = AuditEvent.objects.get(action="claim.taken_over")
    assert event.actor == supervisor


@pytest.mark.parametrize(
    ("changes", "bad_field"),
    [
        ({"owner": ""}, "owner"),
        ({"owner": "   "}, "owner"),
        ({"agent_id": ""}, "agent_id"),
        ({"fingerprint": ""}, "fingerprint"),
        ({"story": ""}, "story"),
        ({"owner": "x" * 151}, "owner"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": -5}, "ttl_seconds"),
        ({"ttl_seconds": 10**12}, "ttl_seconds"),
        ({"ttl_seconds": "60"}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
    ],
)
def test_bad_claim_input_is_refused_and_nothing_is_written(changes, bad_field):
    request = {
        "story": "checkout",
        "todolist": "payment-form",
        "owner": "maria",
        "agent_id": "builder-7",
        "fingerprint": "fp",
        "ttl_seconds": 60,
        **changes,
    }

    with pytest.raises(InvalidInput) as invalid:
        services.claim(**request, actor=Actor(source=Source.API))

    assert bad_field in invalid.value.fields
    assert not Claim.objects.exists()
    assert not AuditEvent.objects.exists()


def test_huge_ttl_is_refused_on_refresh(settings):
    settings.CLAIM_MAX_TTL = 3600
    held = claim_as("builder-7").claim

    with pytest.raises(InvalidInput) as invalid:
        services.refresh(held.pk, agent_id="builder-7", ttl_seconds=3601, actor=Actor(source="api"))

    assert "3600" in invalid.value.fields["ttl_seconds"]
    held.refresh_from_db()
    assert held.version == 1


@pytest.mark.parametrize("claim_id", [999999, "abc", None, -1, 10**30])
def test_unknown_claim_is_not_found_and_nothing_is_written(claim_id, supervisor_actor):
    baker.make(Claim, expires_at=timezone.now(), acquired_at=timezone.now(), ttl_seconds=1)
    actor = Actor(source=Source.API)

    for change in (
        lambda: services.refresh(claim_id, agent_id="a", actor=actor),
        lambda: services.release(claim_id, agent_id="a", actor=actor),
        lambda: services.force_release(claim_id, actor=supervisor_actor),
        lambda: services.take_over(claim_id, actor=supervisor_actor),
    ):
        with pytest.raises(NotFound):
            change()

    assert not AuditEvent.objects.exists()
