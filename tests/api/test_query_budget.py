"""The approve request's database queries, pinned (docs/api.md, "Performance").

Approving over HTTP is the hot path held against a minimal Django approve; each query on it is a
round trip under a row lock. A new one must be a decision, so this test names every query and
fails when one is added.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telegram_bridge import outbox
from telegram_bridge.models import OutboundMessage

from .conftest import client_with_token, token_for
from .test_approvals import URL, ask

APPROVER_CHAT = -1001

# Token and user; the request locked with its requester, decider and callback URL (if any); its
# votes with their voters, read once for this voter's earlier vote, the tally, the audit details,
# the Telegram message and the answer; the vote; the decision; the audit chain's head and the
# audit event; the announcement in the approver chat; the edit of it (one INSERT … ON CONFLICT DO
# NOTHING, no savepoint). A request that is not a job's costs no job lookup. Not counted: the
# throttle's counter and the cached permissions, which live in Redis in production (here in the
# database cache).
APPROVE_QUERIES = 9
# Token and user; the request with its requester, decider and callback URL; its votes with their
# voters, however many there are.
SHOW_QUERIES = 3


def approve(client, approval_id):
    return client.post(f"{URL}{approval_id}/approve/", {}, format="json")


@pytest.mark.django_db
def test_approving_over_http_costs_a_fixed_number_of_queries(
    settings, agent_client, approver_client
):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    first, second = ask(agent_client).json()["id"], ask(agent_client).json()["id"]
    # The announcements were delivered, so a decision queues an edit of each.
    outbox.messages().update(status=OutboundMessage.Status.SENT, telegram_message_id=7)
    assert approve(approver_client, first).status_code == 200  # the permission cache warms up

    with CaptureQueriesContext(connection) as captured:
        response = approve(approver_client, second)

    assert (response.status_code, response.json()["status"]) == (200, "approved")
    assert len(queries_of(captured, settings)) == APPROVE_QUERIES, queries_of(captured, settings)
    assert outbox.messages().filter(method="editMessageText").count() == 2


def queries_of(captured, settings):
    """The statements of a request, without the savepoints the test's own transaction turns the
    view's into, and without the cache table, which is Redis in production."""
    return [
        query["sql"]
        for query in captured.captured_queries
        if "SAVEPOINT" not in query["sql"]
        and settings.CACHES["default"]["LOCATION"] not in query["sql"]
    ]


@pytest.fixture
def decided_by_three(make_policy, release_managers, agent_client):
    """A request approved by the votes of alice, bob and carol, and carol's client."""
    make_policy(kind="command", quorum=3, approver_groups=[release_managers])
    approval_id = ask(agent_client).json()["id"]
    clients = {
        user.username: client_with_token(token_for(user))
        for user in release_managers.user_set.all()
    }
    for username in ("alice", "bob", "carol"):
        assert approve(clients[username], approval_id).status_code == 200
    return approval_id, clients["carol"]


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "wait"])
def test_showing_a_request_reads_its_votes_once_however_many(settings, decided_by_three, method):
    approval_id, client = decided_by_three
    path = f"{URL}{approval_id}/" if method == "get" else f"{URL}{approval_id}/wait/?timeout=0"

    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)

    assert [v["voter"] for v in response.json()["votes"]] == ["alice", "bob", "carol"]
    assert len(queries_of(captured, settings)) == SHOW_QUERIES, queries_of(captured, settings)


@pytest.mark.django_db
def test_approving_again_reads_the_request_and_its_votes_once(settings, decided_by_three):
    approval_id, client = decided_by_three

    with CaptureQueriesContext(connection) as captured:
        response = approve(client, approval_id)

    assert (response.status_code, response.json()["changed"]) == (200, False)
    assert len(response.json()["votes"]) == 3
    assert len(queries_of(captured, settings)) == SHOW_QUERIES, queries_of(captured, settings)
