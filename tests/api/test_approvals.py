import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from model_bakery import baker

from audit.models import AuditEvent
from claims.models import ApprovalRequest

from .conftest import client_with_token, token_for

URL = "/api/v1/approvals/"
QUESTION = {"kind": "command", "text": "May I run the migration?", "payload": {"cmd": "migrate"}}


def ask(client, body=QUESTION):
    return client.post(URL, body, format="json")


@pytest.fixture
def pending(agent_client):
    return ask(agent_client).json()


@pytest.mark.django_db
class TestRequesting:
    def test_an_agent_asks_and_is_named_as_requester(self, agent_client, agent_user):
        response = ask(agent_client)
        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "pending"
        assert body["requested_by"] == "agent-bot"
        assert body["requested_by_user"] == "agent-bot"
        assert body["payload"] == {"cmd": "migrate"}
        event = AuditEvent.objects.get(action="approval.requested")
        assert (event.source, event.actor_id) == ("api", agent_user.pk)

    def test_a_request_names_its_agent_and_claim_but_not_another_requester(
        self, agent_client, claim_body
    ):
        claim_id = agent_client.post("/api/v1/claims/", claim_body, format="json").json()["id"]
        body = ask(
            agent_client,
            {**QUESTION, "requested_by": "admin", "agent_id": "agent-7", "claim": claim_id},
        ).json()
        assert (body["requested_by"], body["agent_id"], body["claim"]) == (
            "agent-bot",
            "agent-7",
            claim_id,
        )

    def test_an_unknown_kind_is_a_400_and_an_unknown_claim_a_404(self, agent_client):
        response = ask(agent_client, {**QUESTION, "kind": "wish", "claim": 424242})
        assert response.status_code == 400
        assert set(response.json()["fields"]) == {"kind"}
        response = ask(agent_client, {**QUESTION, "claim": 424242})
        assert (response.status_code, response.json()["error"]) == (404, "not_found")

    def test_a_payload_that_is_not_an_object_is_a_400(self, agent_client):
        response = ask(agent_client, {**QUESTION, "payload": [1]})
        assert response.status_code == 400
        assert "payload" in response.json()["fields"]

    def test_a_nul_character_deep_in_the_payload_is_a_400(self, agent_client):
        response = ask(agent_client, {**QUESTION, "payload": {"a": [{"b": "x\x00"}]}})
        assert response.status_code == 400
        assert response.json()["error"] == "parse_error"


@pytest.mark.django_db
class TestDeciding:
    def test_an_approver_approves(self, approver_client, approver, pending):
        response = approver_client.post(
            f"{URL}{pending['id']}/approve/", {"note": "go"}, format="json"
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["changed"], body["decided_by"]) == (
            "approved",
            True,
            "approver",
        )
        assert (body["decision_source"], body["decision_note"]) == ("api", "go")
        event = AuditEvent.objects.get(action="approval.approved")
        assert (event.source, event.actor_id) == ("api", approver.pk)

    @pytest.mark.parametrize(
        ("decision", "status"), [("deny", "denied"), ("postpone", "postponed")]
    )
    def test_an_approver_denies_or_postpones(self, approver_client, pending, decision, status):
        response = approver_client.post(f"{URL}{pending['id']}/{decision}/")
        assert response.status_code == 200
        assert response.json()["status"] == status

    def test_deciding_the_same_way_again_is_200_with_changed_false(self, approver_client, pending):
        approver_client.post(f"{URL}{pending['id']}/approve/")
        response = approver_client.post(f"{URL}{pending['id']}/approve/")
        assert response.status_code == 200
        assert response.json()["changed"] is False
        assert AuditEvent.objects.filter(action="approval.approved").count() == 1

    def test_a_conflicting_decision_is_a_409_with_the_current_status(
        self, approver_client, pending
    ):
        approver_client.post(f"{URL}{pending['id']}/approve/")
        response = approver_client.post(f"{URL}{pending['id']}/deny/")
        assert response.status_code == 409
        assert response.json()["error"] == "invalid_transition"
        assert response.json()["status"] == "approved"

    def test_an_expired_request_cannot_be_decided(self, approver_client, pending):
        ApprovalRequest.objects.filter(pk=pending["id"]).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert approver_client.post(f"{URL}{pending['id']}/approve/").status_code == 409

    @pytest.mark.parametrize("decision", ["approve", "deny", "postpone", "archive"])
    def test_users_without_the_permission_get_403(self, agent_client, pending, decision):
        response = agent_client.post(f"{URL}{pending['id']}/{decision}/")
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"
        assert ApprovalRequest.objects.get(pk=pending["id"]).status == "pending"

    def test_short_ids_work_as_in_the_admin_cli_and_telegram(self, approver_client, pending):
        short = pending["id"].replace("-", "")[:8]
        assert approver_client.get(f"{URL}{short}/").json()["id"] == pending["id"]
        response = approver_client.post(f"{URL}{short}/postpone/")
        assert response.json()["status"] == "postponed"

    def test_a_postponed_request_is_reopened(self, approver_client, pending):
        approver_client.post(f"{URL}{pending['id']}/postpone/")
        response = approver_client.post(f"{URL}{pending['id']}/reopen/")
        assert (response.status_code, response.json()["status"]) == (200, "pending")

    @pytest.mark.parametrize("note", [5, 1.5, True, ["x"]])
    def test_a_note_that_is_not_text_is_a_400(self, approver_client, pending, note):
        response = approver_client.post(f"{URL}{pending['id']}/approve/", {"note": note})
        assert response.status_code == 400

    def test_a_note_too_long_is_a_400(self, approver_client, pending):
        response = approver_client.post(
            f"{URL}{pending['id']}/approve/", {"note": "x" * 2001}, format="json"
        )
        assert response.status_code == 400
        assert "note" in response.json()["fields"]

    @pytest.mark.parametrize("approval_id", [str(uuid.uuid4()), "not-a-uuid", "12"])
    def test_unknown_or_malformed_ids_are_404(self, approver_client, approval_id):
        assert approver_client.get(f"{URL}{approval_id}/").status_code == 404
        response = approver_client.post(f"{URL}{approval_id}/approve/")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


@pytest.mark.django_db
class TestArchiving:
    def test_a_decided_request_is_archived_once(self, approver_client, pending):
        approver_client.post(f"{URL}{pending['id']}/deny/")
        first = approver_client.post(f"{URL}{pending['id']}/archive/")
        again = approver_client.post(f"{URL}{pending['id']}/archive/")
        assert (first.status_code, first.json()["status"], first.json()["changed"]) == (
            200,
            "archived",
            True,
        )
        assert (again.status_code, again.json()["changed"]) == (200, False)

    def test_a_pending_request_cannot_be_archived(self, approver_client, pending):
        response = approver_client.post(f"{URL}{pending['id']}/archive/")
        assert response.status_code == 409
        assert response.json()["status"] == "pending"

    def test_deciding_without_archiving_permission_cannot_archive(self, pending, db):

        decider = baker.make("auth.User", username="decider", is_active=True)
        decider.user_permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
        client = client_with_token(token_for(decider))
        assert client.post(f"{URL}{pending['id']}/approve/").status_code == 200
        assert client.post(f"{URL}{pending['id']}/archive/").status_code == 403


@pytest.mark.django_db
class TestListing:
    @pytest.fixture
    def requests(self, approver_client):
        alpha, beta = (
            client_with_token(token_for(baker.make("auth.User", username=name)))
            for name in ("alpha", "beta")
        )
        first = ask(alpha).json()
        ask(beta, {**QUESTION, "kind": "manifest"})
        approver_client.post(f"{URL}{first['id']}/approve/")
        ApprovalRequest.objects.filter(pk=first["id"]).update(
            created_at=timezone.now() - timedelta(days=2)
        )

    @pytest.mark.parametrize(
        ("query", "requesters"),
        [
            ("", ["beta", "alpha"]),
            ("status=approved", ["alpha"]),
            ("kind=manifest", ["beta"]),
            ("requester=alpha", ["alpha"]),
            ("created_after=" + "2000-01-01T00:00:00Z", ["beta", "alpha"]),
        ],
    )
    def test_filters_by_status_kind_requester_and_dates(
        self, agent_client, requests, query, requesters
    ):
        body = agent_client.get(f"{URL}?{query}").json()
        assert [item["requested_by"] for item in body["results"]] == requesters

    def test_a_date_range_selects_by_creation_time(self, agent_client, requests):
        yesterday = (timezone.now() - timedelta(days=1)).isoformat()
        after = agent_client.get(URL, {"created_after": yesterday}).json()["results"]
        before = agent_client.get(URL, {"created_before": yesterday}).json()["results"]
        assert [item["requested_by"] for item in after] == ["beta"]
        assert [item["requested_by"] for item in before] == ["alpha"]

    @pytest.mark.parametrize("query", ["status=maybe", "created_after=yesterday", "kind=x"])
    def test_bad_filter_values_are_a_400(self, agent_client, requests, query):
        response = agent_client.get(f"{URL}?{query}")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "moment",
    ["2000-01-01T00:00:00+16:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"],
)
def test_date_filters_with_extreme_offsets_answer_without_error(agent_client, moment):
    response = agent_client.get(URL, {"created_after": moment})
    assert response.status_code in (200, 400)
