"""``GET /api/v1/approvals/{id}/wait/``: the bounded wait for a decision, in process."""

import time

import pytest

from claims.waiting import MAX_WAIT_SECONDS

from .test_approvals import URL, ask

pytestmark = pytest.mark.django_db


def wait(client, approval_id, **params):
    return client.get(f"{URL}{approval_id}/wait/", params)


def test_a_decided_request_is_answered_at_once_as_the_request_itself(agent_client, approver_client):
    approval = ask(agent_client).json()
    approver_client.post(f"{URL}{approval['id']}/approve/", {}, format="json")
    started = time.monotonic()
    response = wait(agent_client, approval["id"], timeout=20)
    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert response.json() == agent_client.get(f"{URL}{approval['id']}/").json()
    assert response.json()["status"] == "approved"


def test_an_undecided_request_is_answered_pending_when_time_is_up(agent_client):
    approval = ask(agent_client).json()
    started = time.monotonic()
    response = wait(agent_client, approval["id"][:8], timeout="0.2")
    assert time.monotonic() - started >= 0.2
    assert (response.status_code, response.json()["status"]) == (200, "pending")


@pytest.mark.parametrize("timeout", ["-1", str(MAX_WAIT_SECONDS + 1), "soon", "nan", ""])
def test_a_timeout_out_of_bounds_is_a_400_naming_the_cap(agent_client, timeout):
    approval = ask(agent_client).json()
    response = wait(agent_client, approval["id"], timeout=timeout)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert f"0 to {MAX_WAIT_SECONDS:g}" in body["fields"]["timeout"][0]


def test_an_unknown_request_is_a_404(agent_client):
    response = wait(agent_client, "00000000-0000-4000-8000-000000000000", timeout=0)
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


def test_waiting_needs_a_token(anonymous_client, agent_client):
    approval = ask(agent_client).json()
    assert wait(anonymous_client, approval["id"], timeout=0).status_code == 401
