"""Leases as a holder leaves them, for tests of the pages that show them."""

from datetime import timedelta

from django.utils import timezone
from model_bakery import baker

from claims.models import Claim


def live_lease(story, todolist="release", *, ends_in=timedelta(minutes=2)):
    """A live lease on ``story``/``todolist`` held by builder (builder-7), ending in ``ends_in``."""
    now = timezone.now()
    return baker.make(
        Claim,
        story=story,
        todolist=todolist,
        owner="builder",
        agent_id="builder-7",
        ttl_seconds=300,
        acquired_at=now,
        expires_at=now + ends_in,
    )
