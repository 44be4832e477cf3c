from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record
from backoffice.actors import Actor, Source

URL = "/api/v1/audit/"


def event(action, **fields):
    return record(action, actor=Actor(source=fields.pop("source", Source.SYSTEM), **fields))


def actions(page):
    """The actions on a page, less the creation of the test clients' own tokens."""
    return [item["action"] for item in page["results"] if item["action"] != "api_token.created"]


@pytest.mark.django_db
class TestAccess:
    def test_staff_with_the_view_permission_read_the_trail(self, auditor_client):
        event("x.happened")
        response = auditor_client.get(URL)
        assert response.status_code == 200
        assert "x.happened" in actions(response.json())

    def test_others_get_403(self, agent_client, approver_client):
        for client in (agent_client, approver_client):
            response = client.get(URL)
            assert response.status_code == 403
            assert response.json()["error"] == "permission_denied"

    def test_the_trail_is_read_only(self, auditor_client):
        assert auditor_client.post(URL, {}, format="json").status_code == 405
        first = event("x.happened")
        assert auditor_client.delete(f"{URL}{first.pk}/").status_code == 405

    @pytest.mark.parametrize("event_id", ["abc", "999999", "99999999999999999999999"])
    def test_unknown_events_are_404(self, auditor_client, event_id):
        assert auditor_client.get(f"{URL}{event_id}/").status_code == 404


@pytest.mark.django_db
class TestFilters:
    @pytest.fixture
    def trail(self, agent_user):
        event("claim.released", source=Source.CLI)
        event("claim.acquired", source=Source.API, user=agent_user, label="agent-7")
        event("approval.approved", source=Source.TELEGRAM, label="tg-anna")

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("action=claim.acquired", ["claim.acquired"]),
            ("source=telegram", ["approval.approved"]),
            ("actor=agent-bot", ["claim.acquired"]),
            ("actor=tg-anna", ["approval.approved"]),
            ("object_type=nothing", []),
        ],
    )
    def test_by_action_source_and_actor(self, auditor_client, trail, query, expected):
        page = auditor_client.get(f"{URL}?{query}").json()
        assert actions(page) == expected

    def test_by_time_range(self, auditor_client, trail):
        cut = AuditEvent.objects.get(action="claim.acquired").timestamp.isoformat()
        assert actions(auditor_client.get(URL, {"until": cut}).json()) == ["claim.released"]
        assert actions(auditor_client.get(URL, {"since": cut}).json()) == [
            "claim.acquired",
            "approval.approved",
        ]
        future = (timezone.now() + timedelta(days=1)).isoformat()
        assert actions(auditor_client.get(URL, {"since": future}).json()) == []

    def test_by_object(self, auditor_client, agent_client, claim_body):
        claim_id = agent_client.post("/api/v1/claims/", claim_body, format="json").json()["id"]
        page = auditor_client.get(
            URL, {"object_type": "claims.claim", "object_id": str(claim_id)}
        ).json()
        assert actions(page) == ["claim.acquired"]
        assert page["results"][0]["actor"] == "agent-bot"
        assert page["results"][0]["source"] == "api"

    @pytest.mark.parametrize("query", ["source=carrier-pigeon", "since=tomorrow"])
    def test_bad_filters_are_a_400(self, auditor_client, query):
        assert auditor_client.get(f"{URL}?{query}").status_code == 400


@pytest.mark.django_db
class TestCursorPagination:
    def test_pages_are_oldest_first_and_stable_while_events_arrive(self, auditor_client):
        for number in range(5):
            event(f"early.{number}")
        seen = []
        page = auditor_client.get(URL, {"page_size": 2}).json()
        arrived = 0
        while True:
            seen.extend(actions(page))
            # New events land between page fetches, as they would in production.
            event(f"late.{arrived}")
            arrived += 1
            if not page["next"] or arrived > 20:
                break
            page = auditor_client.get(page["next"]).json()
        expected = list(
            AuditEvent.objects.exclude(action="api_token.created")
            .order_by("timestamp", "id")
            .values_list("action", flat=True)
        )
        assert len(seen) == len(set(seen))
        assert seen == expected[: len(seen)]
        assert seen[:5] == [f"early.{number}" for number in range(5)]

    def test_going_back_gives_the_same_page(self, auditor_client):
        for number in range(4):
            event(f"e.{number}")
        first = auditor_client.get(URL, {"page_size": 2}).json()
        second = auditor_client.get(first["next"]).json()
        event("e.new")
        back = auditor_client.get(second["previous"]).json()
        assert actions(back) == actions(first)

    @pytest.mark.parametrize("cursor", ["garbage", "cD0yMDI0", "cD1ub3QtYS1kYXRl"])
    def test_an_invalid_cursor_is_a_404(self, auditor_client, cursor):
        response = auditor_client.get(URL, {"cursor": cursor})
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
