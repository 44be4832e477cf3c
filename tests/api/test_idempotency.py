import io
import threading
import time

import pytest
import requests
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from model_bakery import baker

from api.models import IdempotencyKey
from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from claims import services
from claims.models import ApprovalRequest, Claim

from .conftest import token_for

URL = "/api/v1/claims/"


def post(client, body, key, url=URL):
    return client.post(url, body, format="json", headers={"Idempotency-Key": key})


@pytest.mark.django_db
class TestReplay:
    def test_the_same_request_again_gets_the_stored_answer_and_no_second_effect(
        self, agent_client, claim_body
    ):
        first = post(agent_client, claim_body, "k-1")
        again = post(agent_client, claim_body, "k-1")
        assert (first.status_code, again.status_code) == (201, 201)
        # The lease token is shown once and never stored, so the replay answers it as null.
        assert again.json() == {**first.json(), "lease_token": None}
        assert not IdempotencyKey.objects.filter(
            response_body__icontains=first.json()["lease_token"]
        ).exists()
        assert again["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first
        assert Claim.objects.get().version == 1
        assert AuditEvent.objects.filter(action__startswith="claim.").count() == 1

    def test_a_domain_error_is_stored_and_replayed_too(self, agent_client, claim_body):
        post(agent_client, claim_body, "k-1")
        rival = {**claim_body, "agent_id": "rival", "fingerprint": "fp-r"}
        first = post(agent_client, rival, "k-2")
        Claim.objects.update(released_at=timezone.now())
        again = post(agent_client, rival, "k-2")
        assert (first.status_code, again.status_code) == (409, 409)
        assert again.json() == first.json()

    def test_the_same_key_with_another_body_is_a_422(self, agent_client, claim_body):
        post(agent_client, claim_body, "k-1")
        response = post(agent_client, {**claim_body, "ttl_seconds": 60}, "k-1")
        assert response.status_code == 422
        assert response.json()["error"] == "idempotency_key_reused"

    def test_the_same_key_on_another_path_is_a_422(self, approver_client, agent_client):
        ask = {"kind": "command", "text": "deploy?"}
        first = post(agent_client, ask, "k-1", "/api/v1/approvals/").json()
        second = post(agent_client, ask, "k-2", "/api/v1/approvals/").json()
        post(approver_client, {}, "decide", f"/api/v1/approvals/{first['id']}/approve/")
        response = post(approver_client, {}, "decide", f"/api/v1/approvals/{second['id']}/approve/")
        assert response.status_code == 422
        assert ApprovalRequest.objects.get(pk=second["id"]).status == "pending"

    def test_keys_belong_to_one_user(self, agent_client, approver_client, claim_body):
        post(agent_client, claim_body, "shared")
        response = post(approver_client, {**claim_body, "story": "S-2"}, "shared")
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response

    def test_a_key_still_in_progress_is_a_409(self, agent_client, claim_body):
        assert post(agent_client, claim_body, "k-1").status_code == 201
        # As a request that claimed the key and has not answered yet leaves it.
        IdempotencyKey.objects.update(response_status=None, response_body=None)
        response = post(agent_client, claim_body, "k-1")
        assert response.status_code == 409
        assert response.json()["error"] == "idempotency_key_in_use"
        assert Claim.objects.get().version == 1

    def test_an_expired_key_runs_the_request_again(self, agent_client, claim_body):
        lease_token = post(agent_client, claim_body, "k-1").json()["lease_token"]
        IdempotencyKey.objects.update(expires_at=timezone.now())
        response = post(agent_client, {**claim_body, "lease_token": lease_token}, "k-1")
        assert response.status_code == 200
        assert response.json()["outcome"] == "refreshed"

    def test_a_server_error_releases_the_key_and_rolls_back(
        self, agent_client, claim_body, monkeypatch
    ):
        def claim_then_crash(**kwargs):
            services.claim.__wrapped__(**kwargs)
            raise RuntimeError("boom")

        monkeypatch.setattr(services, "claim", claim_then_crash)
        agent_client.raise_request_exception = False
        assert post(agent_client, claim_body, "k-1").status_code == 500
        assert not IdempotencyKey.objects.exists()
        assert not Claim.objects.exists()
        monkeypatch.undo()
        assert post(agent_client, claim_body, "k-1").status_code == 201

    @pytest.mark.parametrize("key", ["", "   ", "x" * 256, "cl\u00e9"])
    def test_a_malformed_key_is_a_400(self, agent_client, claim_body, key):
        response = post(agent_client, claim_body, key)
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["fields"]
        assert not Claim.objects.exists()

    def test_malformed_json_is_a_400_and_claims_no_key(self, agent_client):
        response = agent_client.post(
            URL, "{", content_type="application/json", headers={"Idempotency-Key": "k-1"}
        )
        assert response.status_code == 400
        assert not IdempotencyKey.objects.exists()

    def test_purge_deletes_only_expired_keys(self, agent_client, claim_body):
        post(agent_client, claim_body, "old")
        post(agent_client, claim_body, "new")
        IdempotencyKey.objects.filter(key="old").update(expires_at=timezone.now())
        out = io.StringIO()
        call_command("purge_idempotency_keys", stdout=out)
        assert "Deleted 1 " in out.getvalue()
        assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    def _session(self, user):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token_for(user)}"
        return session

    def test_simultaneous_requests_with_one_key_have_one_effect(
        self, live_server, agent_user, claim_body
    ):
        session = self._session(agent_user)
        barrier = threading.Barrier(8)
        answers = []

        def send():
            barrier.wait()
            response = session.post(
                f"{live_server.url}{URL}", json=claim_body, headers={"Idempotency-Key": "same"}
            )
            answers.append(response)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {response.status_code for response in answers} <= {201, 409}
        created = [response for response in answers if response.status_code == 201]
        # Replays are the first answer without its lease token, which is shown only once.
        bodies = [{**response.json(), "lease_token": None} for response in created]
        assert created and all(body == bodies[0] for body in bodies)
        assert sum(bool(response.json()["lease_token"]) for response in created) == 1
        assert AuditEvent.objects.filter(action__startswith="claim.").count() == 1
        assert Claim.objects.get().version == 1

    def test_a_request_running_holds_its_key_until_it_answers(self, live_server, agent_user):
        approver = baker.make("auth.User", username="approver", is_active=True)
        approver.user_permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
        approval = services.request_approval(
            kind="command",
            text="deploy?",
            agent_id="agent",
            actor=Actor(source=Source.API, user=agent_user),
        )
        session = self._session(approver)
        url = f"{live_server.url}/api/v1/approvals/{approval.pk}/approve/"
        headers = {"Idempotency-Key": "decide-1"}
        first = {}
        with transaction.atomic():
            # Hold the request's row: the first approval blocks inside the service.
            ApprovalRequest.objects.select_for_update().get(pk=approval.pk)
            runner = threading.Thread(
                target=lambda: first.update(response=session.post(url, headers=headers))
            )
            runner.start()
            wait_until(lambda: IdempotencyKey.objects.filter(key="decide-1").exists())
            assert session.post(url, headers=headers).status_code == 409
        runner.join(timeout=30)
        assert first["response"].status_code == 200
        replay = session.post(url, headers=headers)
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert AuditEvent.objects.filter(action="approval.approved").count() == 1


def wait_until(condition, timeout=10):
    """Poll ``condition`` (a fresh connection each time) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _in_new_connection(condition):
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def _in_new_connection(condition):
    result = []
    thread = threading.Thread(target=lambda: (result.append(condition()), connection.close()))
    thread.start()
    thread.join()
    return result[0]
