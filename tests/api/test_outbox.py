import pytest

from audit.models import AuditEvent
from telegram_bridge.models import OutboundMessage
from tests.telegram.outbound import outbound_message

URL = "/api/v1/outbox/"


@pytest.mark.django_db
class TestReading:
    def test_staff_with_the_view_permission_list_and_filter(self, auditor_client):
        outbound_message("sent")
        dead = outbound_message("dead", attempts=5, last_error="timeout")
        body = auditor_client.get(URL, {"status": "dead"}).json()
        assert [item["id"] for item in body["results"]] == [dead.pk]
        assert body["results"][0]["last_error"] == "timeout"
        assert auditor_client.get(URL).json()["count"] == 2

    def test_one_message(self, auditor_client):
        sent = outbound_message("sent")
        response = auditor_client.get(f"{URL}{sent.pk}/")
        assert (response.status_code, response.json()["status"]) == (200, "sent")

    def test_agents_and_approvers_get_403(self, agent_client, approver_client):
        for client in (agent_client, approver_client):
            assert client.get(URL).status_code == 403

    def test_an_unknown_status_is_a_400(self, auditor_client):
        assert auditor_client.get(URL, {"status": "lost"}).status_code == 400

    @pytest.mark.parametrize("message_id", ["abc", "999999"])
    def test_unknown_messages_are_404(self, auditor_client, message_id):
        assert auditor_client.get(f"{URL}{message_id}/").status_code == 404
        assert auditor_client.post(f"{URL}{message_id}/requeue/").status_code == 404


@pytest.mark.django_db
class TestRequeue:
    @pytest.mark.parametrize("status", ["dead", "failed"])
    def test_a_failed_or_dead_message_is_requeued_and_audited(
        self, auditor_client, auditor, status
    ):
        stuck = outbound_message(status, attempts=5)
        response = auditor_client.post(f"{URL}{stuck.pk}/requeue/")
        assert response.status_code == 200
        body = response.json()
        assert (body["requeued"], body["status"], body["attempts"]) == (True, "queued", 0)
        event = AuditEvent.objects.get(action="telegram.requeued")
        assert (event.source, event.actor_id) == ("api", auditor.pk)

    def test_a_queued_message_is_left_alone(self, auditor_client):
        queued = outbound_message("queued")
        response = auditor_client.post(f"{URL}{queued.pk}/requeue/")
        assert (response.status_code, response.json()["requeued"]) == (200, False)

    @pytest.mark.parametrize("status", ["sent", "sending"])
    def test_a_sent_or_sending_message_is_a_409(self, auditor_client, status):
        done = outbound_message(status)
        response = auditor_client.post(f"{URL}{done.pk}/requeue/")
        assert response.status_code == 409
        assert response.json()["status"] == status

    def test_staff_without_the_requeue_permission_get_403(self, db, auditor):
        from django.contrib.auth.models import Permission

        from .conftest import client_with_token, token_for

        auditor.user_permissions.remove(Permission.objects.get(codename="requeue_outboundmessage"))
        dead = outbound_message("dead")
        response = client_with_token(token_for(auditor)).post(f"{URL}{dead.pk}/requeue/")
        assert response.status_code == 403
        assert OutboundMessage.objects.get(pk=dead.pk).status == "dead"

    def test_a_repeated_requeue_with_the_same_key_is_replayed(self, auditor_client):
        dead = outbound_message("dead")
        headers = {"Idempotency-Key": "requeue-1"}
        first = auditor_client.post(f"{URL}{dead.pk}/requeue/", headers=headers)
        again = auditor_client.post(f"{URL}{dead.pk}/requeue/", headers=headers)
        assert again.json() == first.json()
        assert again["Idempotent-Replayed"] == "true"
        assert OutboundMessage.objects.get(pk=dead.pk).requeues == 1
