"""Fixtures shared by every test package."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from model_bakery import baker

from backoffice.actors import Actor, Source


def pytest_collection_modifyitems(config, items):
    """Tests marked ``postgres`` need PostgreSQL's row locks; on SQLite they are skipped."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def on_postgres():
    return connection.vendor == "postgresql"


@pytest.fixture
def approver(db):
    """A staff user in the Approvers group the data migration creates."""
    user = baker.make("auth.User", username="approver", is_staff=True, is_active=True)
    user.groups.add(Group.objects.get(name="Approvers"))
    return user


@pytest.fixture
def approver_actor(approver):
    return Actor(source=Source.ADMIN, user=approver)


@pytest.fixture
def agent_actor(db):
    """An agent acting for the user "agent-owner", as an API token would make it."""
    return Actor(
        source=Source.API, user=baker.make("auth.User", username="agent-owner"), label="agent-7"
    )


@pytest.fixture
def make_policy(db):
    """An approval policy; ``approver_groups`` is a list of groups, everything else a field."""

    def make(approver_groups=(), **fields):
        fields.setdefault("name", f"policy-{fields.get('kind', '')}-{fields.get('story_pattern')}")
        policy = baker.make("claims.ApprovalPolicy", **fields)
        policy.approver_groups.set(approver_groups)
        return policy

    return make


@pytest.fixture
def release_managers(db):
    """A group of three approvers (alice, bob, carol) that may decide approval requests."""
    group = Group.objects.create(name="Release managers")
    approvers = Group.objects.get(name="Approvers")
    for username in ("alice", "bob", "carol"):
        user = baker.make("auth.User", username=username, is_staff=True, is_active=True)
        user.groups.add(group, approvers)
    return group


@pytest.fixture
def manager_actor(release_managers):
    """``manager_actor("bob")``: the admin actor of one of the release managers."""

    def actor(username, source=Source.ADMIN):
        return Actor(source=source, user=release_managers.user_set.get(username=username))

    return actor
