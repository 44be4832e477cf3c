"""The client library and the console script against a live gunicorn serving the test database.

The server runs for the whole module (starting it takes seconds); each test commits its data
(``transaction=True``) so the server sees it, and the database is emptied after each test.
"""

import pytest
from claimdesk_client import Client
from django.contrib.auth.models import Permission
from model_bakery import baker

from backoffice.actors import Actor, Source
from tests.api.conftest import token_for
from tests.live_gunicorn import live_gunicorn


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "gunicorn.log"
    with live_gunicorn(log, threads=8, CALLBACK_ALLOWED_HOSTS="hooks.example.com") as base:
        yield base


@pytest.fixture
def agent_user(transactional_db):
    return baker.make("auth.User", username="agent-bot", is_active=True)


@pytest.fixture
def agent_token(agent_user):
    return token_for(agent_user)


@pytest.fixture
def agent(server, agent_token):
    with Client(server, agent_token, agent_id="agent-7", backoff=0.01) as client:
        yield client


@pytest.fixture
def other_agent(server, transactional_db):
    user = baker.make("auth.User", username="other-bot", is_active=True)
    with Client(server, token_for(user), agent_id="other-1") as client:
        yield client


@pytest.fixture
def approver_api(server, approver):
    with Client(server, token_for(approver)) as client:
        yield client


@pytest.fixture
def auditor_api(server, transactional_db):
    user = baker.make("auth.User", username="auditor", is_staff=True, is_active=True)
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    with Client(server, token_for(user)) as client:
        yield client


@pytest.fixture
def supervisor_actor(transactional_db):
    """Staff who may force-release a lease."""
    user = baker.make("auth.User", username="supervisor", is_staff=True, is_active=True)
    user.user_permissions.add(Permission.objects.get(codename="force_release_claim"))
    return Actor(source=Source.ADMIN, user=user)
