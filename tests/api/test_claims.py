from datetime import timedelta

import pytest
from django.utils import timezone
from model_bakery import baker

from audit.models import AuditEvent
from claims.models import Claim

from .conftest import CLAIM, client_with_token, token_for

URL = "/api/v1/claims/"


def claim(client, body, **headers):
    return client.post(URL, body, format="json", headers=headers)


@pytest.fixture
def intruder_client(db):
    return client_with_token(token_for(baker.make("auth.User", username="mallory")))


@pytest.mark.django_db
class TestClaiming:
    def test_claim_grants_the_lease_to_the_tokens_user_with_a_lease_token(
        self, agent_client, claim_body
    ):
        response = claim(agent_client, claim_body)
        assert response.status_code == 201
        body = response.json()
        assert body["outcome"] == "acquired"
        assert body["owner"] == "agent-bot"
        assert body["agent_id"] == "agent-7"
        assert body["holder"] == "agent-bot (agent-7)"
        assert body["fencing_token"] == 1
        assert body["lease_token"].startswith("clt_")
        assert body["live"] is True
        assert body["expires_at"].endswith("Z")

    def test_an_owner_in_the_body_does_not_change_who_holds_it(self, agent_client, claim_body):
        response = claim(agent_client, {**claim_body, "owner": "admin"})
        assert response.json()["owner"] == "agent-bot"

    def test_claiming_again_with_the_lease_token_refreshes_with_200(self, agent_client, claim_body):
        first = claim(agent_client, claim_body).json()
        response = claim(agent_client, {**claim_body, "lease_token": first["lease_token"]})
        assert response.status_code == 200
        assert response.json()["outcome"] == "refreshed"
        assert response.json()["lease_token"] is None
        assert response.json()["version"] == first["version"] + 1

    def test_claiming_again_with_the_lease_token_header_refreshes(self, agent_client, claim_body):
        first = claim(agent_client, claim_body).json()
        response = claim(agent_client, claim_body, **{"Lease-Token": first["lease_token"]})
        assert response.status_code == 200

    def test_copying_agent_id_and_fingerprint_is_a_409_and_with_a_token_a_403(
        self, agent_client, intruder_client, claim_body
    ):
        claim(agent_client, claim_body)
        assert claim(intruder_client, claim_body).status_code == 409
        response = claim(intruder_client, {**claim_body, "lease_token": "clt_guess-guess-guess"})
        assert response.status_code == 403
        assert response.json()["error"] == "not_holder"
        refused = AuditEvent.objects.get(action="claim.refused")
        assert refused.actor.username == "mallory"

    def test_a_live_lease_of_someone_else_is_a_409_naming_holder_and_end(
        self, agent_client, claim_body
    ):
        held = claim(agent_client, claim_body).json()
        response = claim(agent_client, {**claim_body, "agent_id": "other", "fingerprint": "fp-x"})
        assert response.status_code == 409
        body = response.json()
        assert body["error"] == "conflict"
        assert body["holder"] == {"owner": "agent-bot", "agent_id": "agent-7"}
        assert body["expires_at"] == held["expires_at"]
        assert body["fields"] == {}
        assert "lease_token" not in body

    def test_an_expired_lease_is_taken_over_with_201(self, agent_client, claim_body):
        held = claim(agent_client, claim_body).json()
        Claim.objects.filter(pk=held["id"]).update(expires_at=timezone.now() - timedelta(1))
        response = claim(agent_client, {**claim_body, "agent_id": "other", "fingerprint": "fp-x"})
        assert response.status_code == 201
        assert response.json()["outcome"] == "taken_over"
        assert response.json()["previous_agent_id"] == "agent-7"

    def test_missing_and_blank_fields_are_a_400_naming_each_field(self, agent_client):
        response = claim(agent_client, {"story": " ", "ttl_seconds": "soon"})
        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "invalid"
        assert set(body["fields"]) == {"story", "todolist", "agent_id", "ttl_seconds"}
        assert all(isinstance(problems, list) for problems in body["fields"].values())

    def test_a_ttl_over_the_maximum_is_a_400_from_the_service(
        self, agent_client, claim_body, settings
    ):
        settings.CLAIM_MAX_TTL = 600
        response = claim(agent_client, {**claim_body, "ttl_seconds": 601})
        assert response.status_code == 400
        assert response.json()["fields"] == {"ttl_seconds": ["must be between 1 and 600 seconds"]}

    def test_a_body_that_is_not_an_object_is_a_400(self, agent_client):
        response = agent_client.post(URL, [1, 2], format="json")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid"

    def test_malformed_json_is_a_400(self, agent_client):
        response = agent_client.post(URL, '{"story": ', content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"] == "parse_error"

    def test_nul_characters_are_a_400_not_a_database_error(self, agent_client, claim_body):
        response = claim(agent_client, {**claim_body, "story": "a\x00b"})
        assert response.status_code == 400

    def test_a_body_that_is_not_json_is_a_415(self, agent_client):
        response = agent_client.post(
            URL, "story=x", content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 415
        assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.django_db
class TestRefreshAndRelease:
    @pytest.fixture
    def held(self, agent_client, claim_body):
        return claim(agent_client, claim_body).json()

    def post(self, client, held, operation, body):
        return client.post(f"{URL}{held['id']}/{operation}/", body, format="json")

    def test_the_holder_refreshes_its_lease(self, agent_client, held):
        response = self.post(
            agent_client, held, "refresh", {"lease_token": held["lease_token"], "ttl_seconds": 900}
        )
        assert response.status_code == 200
        assert response.json()["ttl_seconds"] == 900
        assert response.json()["version"] == held["version"] + 1
        assert "lease_token" not in response.json()

    def test_a_refresh_without_ttl_keeps_the_lease_ttl(self, agent_client, held):
        response = self.post(agent_client, held, "refresh", {"lease_token": held["lease_token"]})
        assert response.json()["ttl_seconds"] == 300

    def test_the_holder_releases_with_the_lease_token_header(self, agent_client, held):
        response = agent_client.post(
            f"{URL}{held['id']}/release/",
            {},
            format="json",
            headers={"Lease-Token": held["lease_token"]},
        )
        assert response.status_code == 200
        assert response.json()["live"] is False
        assert response.json()["released_at"].endswith("Z")

    @pytest.mark.parametrize("operation", ["refresh", "release"])
    @pytest.mark.parametrize(
        "body",
        [
            {"agent_id": "agent-7"},
            {"fingerprint": "fp-7"},
            {"lease_token": "clt_copied-copied-copied-copied"},
        ],
    )
    def test_anyone_without_the_lease_token_is_refused(
        self, intruder_client, held, operation, body
    ):
        response = self.post(intruder_client, held, operation, body)
        assert response.status_code in (400, 403)
        if response.status_code == 403:
            assert response.json()["error"] == "not_holder"
            assert AuditEvent.objects.get(action="claim.refused").actor.username == "mallory"
        assert Claim.objects.get(pk=held["id"]).version == held["version"]

    @pytest.mark.parametrize("operation", ["refresh", "release"])
    def test_no_lease_token_is_a_400(self, agent_client, held, operation):
        response = self.post(agent_client, held, operation, {})
        assert response.status_code == 400
        assert "lease_token" in response.json()["fields"]

    def test_a_stale_fencing_token_is_a_409_stale_fence(self, agent_client, held):
        Claim.objects.filter(pk=held["id"]).update(expires_at=timezone.now() - timedelta(1))
        claim(agent_client, {**CLAIM, "agent_id": "agent-8"})
        response = self.post(
            agent_client, held, "release", {"lease_token": held["lease_token"], "fencing_token": 1}
        )
        assert response.status_code == 409
        assert response.json()["error"] == "stale_fence"
        assert response.json()["fencing_token"] == 2

    def test_refreshing_a_released_lease_is_403(self, agent_client, held):
        self.post(agent_client, held, "release", {"lease_token": held["lease_token"]})
        response = self.post(agent_client, held, "refresh", {"lease_token": held["lease_token"]})
        assert response.status_code == 403

    def test_releasing_twice_changes_nothing_the_second_time(self, agent_client, held):
        proof = {"lease_token": held["lease_token"]}
        first = self.post(agent_client, held, "release", proof).json()
        second = self.post(agent_client, held, "release", proof)
        assert second.status_code == 200
        assert second.json()["version"] == first["version"]

    @pytest.mark.parametrize("claim_id", ["999999", "abc", "99999999999999999999999"])
    @pytest.mark.parametrize("operation", ["refresh/", "release/", ""])
    def test_unknown_or_malformed_ids_are_404(self, agent_client, claim_id, operation):
        if operation:
            response = agent_client.post(
                f"{URL}{claim_id}/{operation}", {"lease_token": "clt_x"}, format="json"
            )
        else:
            response = agent_client.get(f"{URL}{claim_id}/")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


@pytest.mark.django_db
class TestFenceCheck:
    def test_the_current_fencing_token_is_200_and_a_stale_one_409(self, agent_client, claim_body):
        held = claim(agent_client, claim_body).json()
        check = {"story": held["story"], "todolist": held["todolist"]}
        current = agent_client.post(f"{URL}check/", {**check, "fencing_token": 1}, format="json")
        stale = agent_client.post(f"{URL}check/", {**check, "fencing_token": 0}, format="json")
        assert current.status_code == 200 and current.json()["fencing_token"] == 1
        assert stale.status_code == 409 and stale.json()["error"] == "stale_fence"

    def test_an_unknown_work_item_is_404(self, agent_client):
        response = agent_client.post(
            f"{URL}check/", {"story": "x", "todolist": "y", "fencing_token": 1}, format="json"
        )
        assert response.status_code == 404


@pytest.mark.django_db
class TestListing:
    @pytest.fixture
    def claims(self, agent_client, claim_body):
        claim(agent_client, claim_body)
        claim(agent_client, {**claim_body, "story": "STORY-2", "agent_id": "agent-8"})
        blue = client_with_token(token_for(baker.make("auth.User", username="team-blue")))
        expired = claim(blue, {**claim_body, "story": "STORY-3"})
        Claim.objects.filter(pk=expired.json()["id"]).update(expires_at=timezone.now())

    def test_lists_every_claim_in_id_order(self, agent_client, claims):
        body = agent_client.get(URL).json()
        assert body["count"] == 3
        assert [item["story"] for item in body["results"]] == ["STORY-1", "STORY-2", "STORY-3"]

    @pytest.mark.parametrize(
        ("query", "stories"),
        [
            ("agent_id=agent-8", ["STORY-2"]),
            ("owner=team-blue", ["STORY-3"]),
            ("story=STORY-1", ["STORY-1"]),
            ("state=live", ["STORY-1", "STORY-2"]),
            ("state=expired", ["STORY-3"]),
        ],
    )
    def test_filters_by_holder_story_and_state(self, agent_client, claims, query, stories):
        body = agent_client.get(f"{URL}?{query}").json()
        assert [item["story"] for item in body["results"]] == stories

    def test_an_unknown_state_is_a_400(self, agent_client, claims):
        response = agent_client.get(f"{URL}?state=dormant")
        assert response.status_code == 400
        assert "state" in response.json()["fields"]

    def test_pages_with_limit_and_offset(self, agent_client, claims):
        body = agent_client.get(f"{URL}?limit=1&offset=1").json()
        assert [item["story"] for item in body["results"]] == ["STORY-2"]
        assert body["next"] and body["previous"]

    @pytest.mark.parametrize("query", ["offset=null", "offset=1.5", "limit=", "limit=-1"])
    def test_limit_and_offset_must_be_whole_numbers(self, agent_client, claims, query):
        response = agent_client.get(f"{URL}?{query}")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid"

    def test_an_absurd_offset_is_an_empty_page(self, agent_client, claims):
        response = agent_client.get(f"{URL}?offset=99999999999999999999999")
        assert response.status_code == 200
        assert response.json()["results"] == []

    def test_one_claim(self, agent_client, claims):
        first = Claim.objects.get(story="STORY-1")
        response = agent_client.get(f"{URL}{first.pk}/")
        assert response.status_code == 200
        assert response.json()["story"] == "STORY-1"


@pytest.mark.django_db
class TestAudit:
    def test_api_writes_are_audited_with_source_api_the_user_and_the_agent(
        self, agent_client, agent_user, claim_body
    ):
        held = claim(agent_client, claim_body, **{"X-Request-ID": "req-42"}).json()
        agent_client.post(
            f"{URL}{held['id']}/release/", {"lease_token": held["lease_token"]}, format="json"
        )
        events = list(AuditEvent.objects.filter(object_type="claims.claim").order_by("id"))
        assert [event.action for event in events] == ["claim.acquired", "claim.released"]
        assert {event.source for event in events} == {"api"}
        assert {event.actor_id for event in events} == {agent_user.pk}
        assert [event.actor_label for event in events] == ["agent-bot (agent-7)", "agent-bot"]
        assert events[0].trace_id == "req-42"
        assert len(events[1].trace_id) == 32

    def test_the_trace_id_comes_from_traceparent_when_no_request_id(self, agent_client, claim_body):
        traceparent = (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # pragma: allowlist secret
        )
        claim(agent_client, claim_body, traceparent=traceparent)
        assert (
            AuditEvent.objects.get(action="claim.acquired").trace_id
            == "4bf92f3577b34da6a3ce929d0e0e4736"  # pragma: allowlist secret
        )

    def test_a_malformed_request_id_is_replaced_by_a_new_trace_id(self, agent_client, claim_body):
        claim(agent_client, claim_body, **{"X-Request-ID": "x" * 500})
        assert len(AuditEvent.objects.get(action="claim.acquired").trace_id) == 32
