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

from .test_approvals import URL, ask

APPROVER_CHAT = -1001

# Token and user; the request locked with its requester and decider; its votes with their voters,
# read once for this voter's earlier vote, the tally, the audit details, the Telegram message and
# the answer; the vote; the decision; the audit chain's head and the audit event; the announcement
# in the approver chat; the edit of it (one INSERT … ON CONFLICT DO NOTHING, no savepoint); the
# request's decision callback, if any. A request that is not a job's costs no job lookup. Not
# counted: the throttle's counter and the cached permissions, which live in Redis in production
# (here in the database cache).
APPROVE_QUERIES = 10


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
    statements = [query["sql"] for query in captured.captured_queries]
    # The test's own transaction turns the view's into a savepoint; the cache table is Redis.
    queries = [
        sql
        for sql in statements
        if "SAVEPOINT" not in sql and settings.CACHES["default"]["LOCATION"] not in sql
    ]
    assert len(queries) == APPROVE_QUERIES, queries
    assert outbox.messages().filter(method="editMessageText").count() == 2
