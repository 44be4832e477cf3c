"""Signed decision callbacks: queued with the decision, POSTed by the outbox's rules."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from django_q.models import Schedule
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from backoffice.errors import NotPermitted
from callbacks import delivery, services
from callbacks.models import Callback
from claims import services as claims_services
from claims.models import ApprovalRequest, Decision
from tests.api.conftest import client_with_token, token_for

Status = Callback.Status


@pytest.fixture
def agent_client(db):
    return client_with_token(token_for(baker.make("auth.User", username="agent-bot")))


def ask(client, callback_url, **fields):
    return client.post(
        "/api/v1/approvals/",
        {"kind": "command", "text": "Deploy?", "callback_url": callback_url, **fields},
        format="json",
    )


def decide(approval_id, approver, decision=Decision.APPROVE):
    claims_services.decide(approval_id, decision, actor=Actor(Source.ADMIN, approver))


def decided(agent_client, receiver, approver, *statuses):
    """A request with a callback to ``receiver``, approved; the receiver knows the token's
    secret and will answer ``statuses`` first. Returns the request as the API showed it."""
    receiver.secret = agent_client.get("/api/v1/callbacks/secret/").json()["secret"]
    receiver.statuses = list(statuses)
    asked = ask(agent_client, receiver.url).json()
    decide(asked["id"], approver)
    return asked


def make_due():
    Callback.objects.update(next_attempt_at=timezone.now())


def test_decision_is_posted_signed_and_retried_after_a_500(
    agent_client, receiver, approver, settings
):
    settings.OUTBOX_BACKOFF_BASE = 0.05
    asked = decided(agent_client, receiver, approver, 500)
    [callback] = Callback.objects.all()

    delivery.deliver(callback.pk)

    sent = Callback.objects.get()
    assert sent.status == Status.SENT and sent.attempts == 2
    assert sent.last_status_code is None and sent.last_error == ""
    first, second = receiver.received
    assert first.verified and second.verified
    key = f"approval-{asked['id']}-approved"
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == key
    body = json.loads(second.body)
    assert body["event"] == "approval.approved"
    assert body["approval"]["id"] == asked["id"]
    assert body["approval"]["status"] == "approved"


def test_a_retry_later_than_the_inline_wait_is_scheduled(
    agent_client, receiver, approver, settings
):
    settings.OUTBOX_INLINE_WAIT_MAX = 0
    decided(agent_client, receiver, approver, 500)
    callback = Callback.objects.get()

    delivery.deliver(callback.pk)
    failed = Callback.objects.get()
    make_due()
    delivery.deliver(callback.pk)

    assert failed.status == Status.FAILED and failed.last_status_code == 500
    assert failed.next_attempt_at > timezone.now()
    retry = Schedule.objects.get(func="callbacks.tasks.deliver")
    assert retry.args == f"({callback.pk},)" and retry.next_run == failed.next_attempt_at
    assert Callback.objects.get().status == Status.SENT


def test_postponing_sends_nothing_and_expiry_sends_once(agent_client, receiver, approver):
    asked = ask(agent_client, receiver.url).json()
    decide(asked["id"], approver, Decision.POSTPONE)
    assert not Callback.objects.exists()

    ApprovalRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    claims_services.expire_overdue(actor=Actor(Source.SYSTEM))
    claims_services.expire_overdue(actor=Actor(Source.SYSTEM))

    [callback] = Callback.objects.all()
    assert json.loads(callback.body)["event"] == "approval.expired"


@pytest.mark.parametrize(
    ("debug", "url", "problem"),
    [
        (False, "http://127.0.0.1/hook", "must be an https URL"),
        (True, "https://169.254.169.254/latest", "CALLBACK_ALLOWED_HOSTS"),
        (True, "https://user:pw@127.0.0.1/hook", "credentials"),  # pragma: allowlist secret
        (True, "ftp://127.0.0.1/hook", "https"),
        (True, "https://127.0.0.1/" + "a" * 2000, "at most 2000"),
        (True, "https://127.0.0.1:port/", "not a valid URL"),
    ],
)
def test_bad_callback_urls_are_refused_and_nothing_is_asked(
    agent_client, settings, debug, url, problem
):
    settings.DEBUG = debug
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]

    answer = ask(agent_client, url)

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid"
    assert problem in answer.json()["fields"]["callback_url"][0]
    assert not ApprovalRequest.objects.exists()


def test_https_on_an_allowed_host_is_accepted_without_debug(agent_client, settings):
    settings.CALLBACK_ALLOWED_HOSTS = [".example.com"]

    answer = ask(agent_client, "https://hooks.example.com/claimdesk")

    assert answer.status_code == 201
    assert ApprovalRequest.objects.get().callback_target.url.startswith("https://hooks.")


def test_a_session_has_no_secret_to_sign_with(client, approver, receiver):
    client.force_login(approver)

    assert client.get("/api/v1/callbacks/secret/").status_code == 403
    answer = client.post(
        "/api/v1/approvals/",
        {"kind": "command", "text": "Deploy?", "callback_url": receiver.url},
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert "API token" in answer.json()["fields"]["callback_url"][0]


def test_each_token_has_its_own_secret(db):
    user = baker.make("auth.User")
    secrets = {
        client_with_token(token_for(user)).get("/api/v1/callbacks/secret/").json()["secret"]
        for _ in range(2)
    }

    assert len(secrets) == 2


def test_a_refusal_is_dead_at_once_and_staff_requeue_it(agent_client, receiver, approver):
    decided(agent_client, receiver, approver, 404)
    callback = Callback.objects.get()
    delivery.deliver(callback.pk)
    assert Callback.objects.get().status == Status.DEAD
    staff = baker.make("auth.User", is_staff=True, username="operator")
    staff.user_permissions.add(Permission.objects.get(codename="requeue_callback"))

    with pytest.raises(NotPermitted):
        services.requeue(callback.pk, actor=Actor(Source.ADMIN, approver))
    assert services.requeue(callback.pk, actor=Actor(Source.ADMIN, staff)) is True
    delivery.deliver(callback.pk)

    assert Callback.objects.get().status == Status.SENT
    assert AuditEvent.objects.filter(action="callback.requeued").count() == 1


def test_a_host_no_longer_allowed_is_not_called(agent_client, receiver, approver, settings):
    decided(agent_client, receiver, approver)
    settings.CALLBACK_ALLOWED_HOSTS = []

    delivery.deliver(Callback.objects.get().pk)

    assert Callback.objects.get().status == Status.DEAD
    assert receiver.received == []


def test_retries_stop_at_the_outbox_limit(agent_client, receiver, approver, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    decided(agent_client, receiver, approver, 503, 503)

    for _ in range(2):
        make_due()
        delivery.sweep()

    assert Callback.objects.get().status == Status.DEAD
    assert len(receiver.received) == 2


def test_staff_requeue_a_dead_callback_from_the_admin(
    agent_client, receiver, approver, admin_client
):
    decided(agent_client, receiver, approver)
    Callback.objects.update(status=Status.DEAD)
    callback = Callback.objects.get()

    listed = admin_client.get("/admin/callbacks/callback/")
    answer = admin_client.post(
        "/admin/callbacks/callback/",
        {"action": "requeue_selected", "_selected_action": [callback.pk]},
        follow=True,
    )

    assert receiver.url in listed.content.decode()
    assert f"#{callback.pk}: requeued" in answer.content.decode()
    assert Callback.objects.get().status == Status.QUEUED
