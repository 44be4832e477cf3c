"""Fixtures shared by every test package."""

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import override_settings
from model_bakery import baker

from backoffice.actors import Actor, Source

AUDIT_TABLE = "audit_auditevent"


def pytest_configure(config):
    """Refuse to run against Redis database 0 or the default queue, where a local deployment on
    this machine keeps its tasks: a test run must never wipe or feed them."""
    if urlsplit(settings.TEST_REDIS_URL).path.strip("/") in {"", "0"}:
        raise pytest.UsageError("TEST_REDIS_URL must name a Redis database other than 0.")
    if settings.Q_CLUSTER["name"] == "claimdesk":
        raise pytest.UsageError("Q_CLUSTER_NAME must not be the default queue 'claimdesk'.")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``postgres`` need PostgreSQL's row locks; on SQLite they are skipped."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database lets TRUNCATE through on the audit table: pytest-django empties the
    database with it after every transactional test, and production's trigger refuses it
    (tests/audit/test_chain.py turns the trigger back on to test that)."""
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER audit_no_truncate")


@pytest.fixture(autouse=True, scope="session")
def static_files_without_collectstatic():
    """Pages render without collectstatic having run: production's hashed names need it, and
    tests/deploy/test_static_files.py checks them in a real gunicorn."""
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": plain}):
        yield


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


@dataclass
class TestRedis:
    """The test Redis (``TEST_REDIS_URL``) and a key prefix no other test or run shares."""

    url: str
    client: redis.Redis
    prefix: str


@pytest.fixture
def test_redis(settings):
    """Redis at ``TEST_REDIS_URL`` (skipped when it does not answer); every key under the
    fixture's prefix is deleted afterwards."""
    client = redis.Redis.from_url(settings.TEST_REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"Redis is not reachable at {settings.TEST_REDIS_URL} (TEST_REDIS_URL)")
    prefix = f"{settings.Q_CLUSTER['name']}-{uuid.uuid4().hex}"
    try:
        yield TestRedis(url=settings.TEST_REDIS_URL, client=client, prefix=prefix)
    finally:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


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
