"""Voting over the API: ``POST .../approve/`` is one approver's vote under the request's policy."""

import pytest

from .conftest import client_with_token, token_for

URL = "/api/v1/approvals/"
RELEASE = {"kind": "manifest", "text": "Release 2.4", "payload": {"story": "release-2.4"}}

pytestmark = pytest.mark.django_db


@pytest.fixture
def managers(release_managers):
    """An API client per release manager, by username."""
    return {
        user.username: client_with_token(token_for(user))
        for user in release_managers.user_set.all()
    }


@pytest.fixture
def release(make_policy, release_managers, agent_client):
    make_policy(
        name="Releases", kind="manifest", story_pattern="release-*", quorum=2,
        approver_groups=[release_managers],
    )  # fmt: skip
    return agent_client.post(URL, RELEASE, format="json").json()


def vote(client, approval, choice="approve", note=""):
    return client.post(f"{URL}{approval['id']}/{choice}/", {"note": note}, format="json")


def test_the_request_carries_its_policy_and_an_empty_tally(release):
    assert release["policy"] == "Releases"
    assert release["votes"] == []
    assert release["tally"] == {
        "approvals": 0,
        "denials": 0,
        "quorum": 2,
        "deny_needs_quorum": False,
        "waiting_for": ["alice", "bob", "carol"],
        "summary": "0 of 2 approvals, waiting for alice, bob, carol",
    }


def test_approve_is_a_vote_and_the_quorum_decides(release, managers):
    first = vote(managers["alice"], release, note="tests are green")
    second = vote(managers["bob"], release)

    assert first.status_code == 200
    body = first.json()
    assert (body["status"], body["changed"]) == ("pending", True)
    assert body["tally"]["summary"] == "1 of 2 approvals, waiting for bob, carol"
    assert [(v["voter"], v["choice"], v["source"], v["note"]) for v in body["votes"]] == [
        ("alice", "approve", "api", "tests are green")
    ]
    body = second.json()
    assert (body["status"], body["decided_by"], body["changed"]) == ("approved", "bob", True)
    assert [v["voter"] for v in body["votes"]] == ["alice", "bob"]
    listed = managers["carol"].get(URL, {"status": "approved"}).json()["results"]
    assert listed[0]["tally"]["summary"] == "2 of 2 approvals"


def test_voting_again_the_same_way_changes_nothing(release, managers):
    vote(managers["alice"], release)

    again = vote(managers["alice"], release)

    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert again.json()["tally"]["approvals"] == 1


def test_an_approver_outside_the_eligible_groups_is_refused(release, approver_client):
    response = vote(approver_client, release)

    assert response.status_code == 403
    assert "Release managers" in response.json()["detail"]


def test_the_requester_cannot_vote_on_their_own_request(release_managers, make_policy, managers):
    make_policy(name="Commands", kind="command", approver_groups=[release_managers])
    own = managers["alice"].post(URL, {"kind": "command", "text": "Restart"}, format="json").json()

    response = vote(managers["alice"], own)

    assert response.status_code == 403
    assert response.json()["detail"] == "You may not decide a request you made yourself."
