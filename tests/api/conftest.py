"""Clients of the API, each authenticated with a real token."""

import pytest
from django.contrib.auth.models import Permission
from model_bakery import baker
from rest_framework.test import APIClient

from api.tokens import create_token
from backoffice.actors import Actor, Source


def token_for(user):
    _, key = create_token(user, actor=Actor(source=Source.SYSTEM, label="tests"))
    return key


def client_with_token(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def agent_user(db):
    """A user an automation agent authenticates as; no special permissions."""
    return baker.make("auth.User", username="agent-bot", is_active=True)


@pytest.fixture
def agent_client(agent_user):
    return client_with_token(token_for(agent_user))


@pytest.fixture
def approver_client(approver):
    return client_with_token(token_for(approver))


@pytest.fixture
def auditor(db):
    """Staff allowed to read the audit trail and the outbox, and to requeue messages."""
    user = baker.make("auth.User", username="auditor", is_staff=True, is_active=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_auditevent", "view_outboundmessage", "requeue_outboundmessage"]
        )
    )
    return user


@pytest.fixture
def auditor_client(auditor):
    return client_with_token(token_for(auditor))


@pytest.fixture
def anonymous_client():
    return APIClient()


CLAIM = {
    "story": "STORY-1",
    "todolist": "backend",
    "agent_id": "agent-7",
    "fingerprint": "fp-7",
    "ttl_seconds": 300,
}


@pytest.fixture
def claim_body():
    return dict(CLAIM)
