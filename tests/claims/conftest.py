from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from model_bakery import baker

from backoffice.actors import Actor, Source
from claims.models import ApprovalRequest


@pytest.fixture
def supervisor(db):
    """A staff user who may force-release and take over claims, and see them in the admin."""
    user = baker.make("auth.User", username="supervisor", is_staff=True, is_active=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="claims", codename__in=["force_release_claim", "view_claim"]
        )
    )
    return user


@pytest.fixture
def supervisor_actor(supervisor):
    return Actor(source=Source.ADMIN, user=supervisor)


@pytest.fixture
def make_approval(db):
    """An approval request in any status, due in an hour unless told otherwise."""

    def make(status=ApprovalRequest.Status.PENDING, expires_in=timedelta(hours=1), **fields):
        fields.setdefault("kind", ApprovalRequest.Kind.COMMAND)
        fields.setdefault("text", "Restart the queue workers on worker-03")
        fields.setdefault("requested_by", "ops-bot")
        return baker.make(
            ApprovalRequest, status=status, expires_at=timezone.now() + expires_in, **fields
        )

    return make
