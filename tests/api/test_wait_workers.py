"""The worker model ``approvals/{id}/wait/`` needs, on a live gunicorn as deployed: one process
of gthread workers holds a waiter per thread, answers other calls meanwhile, and wakes every
waiter after one decision."""

import threading
import time

import pytest
import requests
from django.db import connection

from backoffice.actors import Actor, Source
from claims import services
from tests.live_gunicorn import live_gunicorn
from tests.telegram.worker import wait_for

from .conftest import token_for

pytestmark = pytest.mark.django_db(transaction=True)

WAITERS = 16


def connections_to_the_test_database() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.fixture(params=["polling", "redis"])
def wake_up(request, settings):
    """How waiters learn of the decision: their own looks at the database, or Redis."""
    if request.param == "polling":
        return {}
    redis_url = request.getfixturevalue("test_redis").url
    settings.REDIS_URL = redis_url
    return {"REDIS_URL": redis_url}


def test_one_process_holds_a_waiter_per_thread_and_one_decision_wakes_them_all(
    agent_user, approver, tmp_path, wake_up
):
    token = token_for(agent_user)
    headers = {"Authorization": f"Token {token}"}
    approval = services.request_approval(
        kind="command", text="Rotate the keys", actor=Actor(source=Source.API, user=agent_user)
    )
    answers: list[tuple[int, str, float]] = []
    sent = threading.Semaphore(0)

    with live_gunicorn(tmp_path / "gunicorn.log", threads=WAITERS + 2, **wake_up) as base:
        url = f"{base}/api/v1/approvals/{approval.pk}/"

        def waiter():
            sent.release()
            response = requests.get(f"{url}wait/?timeout=25", headers=headers, timeout=40)
            answers.append((response.status_code, response.json()["status"], time.monotonic()))

        threads = [threading.Thread(target=waiter) for _ in range(WAITERS)]
        for thread in threads:
            thread.start()
        for _ in threads:
            sent.acquire(timeout=10)
        # Connections are accepted and served in order: once a later call is answered, every
        # waiter is on a thread of its own, and the server still answers others.
        probe = requests.get(url, headers=headers, timeout=10)
        assert (probe.status_code, probe.json()["status"]) == (200, "pending")
        assert not answers
        if connection.vendor == "postgresql":
            # Once they wait, the waiters hold none: what is left is the watcher's connection
            # and the one the probe's thread keeps.
            wait_for(
                lambda: connections_to_the_test_database() <= 2,
                timeout=15,
                message="the waiters to let go of their database connections",
            )

        decided = time.monotonic()
        services.decide(approval.pk, "approve", actor=Actor(source=Source.ADMIN, user=approver))
        wait_for(lambda: len(answers) == WAITERS, timeout=30, message="every waiter to answer")
        for thread in threads:
            thread.join(timeout=5)

    assert {(status, state) for status, state, _ in answers} == {(200, "approved")}
    assert max(at for _, _, at in answers) - decided < 5
