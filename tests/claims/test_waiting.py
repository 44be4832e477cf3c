"""Waiting in line for a busy work item, through real threads and PostgreSQL connections."""

import io
import json
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection
from model_bakery import baker
from rest_framework.test import APIClient

from api.tokens import create_token
from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from claims import services
from claims.errors import ClaimConflict
from claims.models import Claim, ClaimWaiter

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAITERS = 32


def poll(what, condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def cli_json(*args, **options):
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return json.loads(out.getvalue())


def test_thirty_two_waiters_are_served_one_at_a_time_in_arrival_order():
    users = [baker.make("auth.User", username=f"ci-{n}") for n in range(WAITERS + 1)]
    first = services.claim(
        story="ci",
        todolist="deploy",
        agent_id="job-first",
        actor=Actor(source=Source.CLI, user=users[WAITERS], label="job-first"),
    )
    guard = threading.Lock()
    served, fences, holding, most_holding, errors = [], [], [0], [0], []

    def job(n):
        try:
            granted = cli_json(
                "claim", "ci", "deploy", user=f"ci-{n}", agent_id=f"job-{n}", wait=120
            )
            with guard:
                holding[0] += 1
                most_holding[0] = max(most_holding[0], holding[0])
                served.append(n)
                fences.append(granted["fencing_token"])
                holding[0] -= 1
            cli_json(
                "release", str(granted["id"]), user=f"ci-{n}", lease_token=granted["lease_token"]
            )
        except Exception as error:  # judged by the test below
            errors.append(error)
        finally:
            connection.close()

    threads = []
    for n in range(WAITERS):
        threads.append(threading.Thread(target=job, args=(n,)))
        threads[-1].start()
        poll(f"waiter {n} in line", lambda n=n: ClaimWaiter.objects.count() == n + 1)
    line = list(ClaimWaiter.objects.order_by("id").values_list("agent_id", flat=True))
    assert line == [f"job-{n}" for n in range(WAITERS)]

    services.release(
        first.claim.pk,
        lease_token=first.lease_token,
        actor=Actor(source=Source.CLI, user=users[WAITERS]),
    )
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert served == list(range(WAITERS))
    assert fences == list(range(2, WAITERS + 2))
    assert most_holding[0] == 1
    assert not ClaimWaiter.objects.exists()
    assert Claim.objects.get().fencing_token == WAITERS + 1


def test_a_waiter_that_gives_up_leaves_the_line():
    holder, waiter = baker.make("auth.User", username="holder"), baker.make("auth.User")
    services.claim(
        story="ci", todolist="deploy", agent_id="a", actor=Actor(source="cli", user=holder)
    )

    with pytest.raises(ClaimConflict):
        services.claim(
            story="ci",
            todolist="deploy",
            agent_id="b",
            wait=0.3,
            actor=Actor(source="cli", user=waiter),
        )

    assert not ClaimWaiter.objects.exists()
    # One conflict however long it waited, recorded when it gave up.
    conflict = AuditEvent.objects.get(action="claim.conflict")
    assert (conflict.actor, conflict.details["error"]) == (waiter, "conflict")


def test_a_claimer_without_wait_does_not_jump_the_line():
    holder, waiter, rude = (baker.make("auth.User") for _ in range(3))
    held = services.claim(
        story="ci", todolist="deploy", agent_id="a", actor=Actor(source="cli", user=holder)
    )
    results = []

    def wait_in_line():
        try:
            results.append(
                services.claim(
                    story="ci",
                    todolist="deploy",
                    agent_id="patient",
                    wait=60,
                    actor=Actor(source="cli", user=waiter),
                )
            )
        finally:
            connection.close()

    thread = threading.Thread(target=wait_in_line)
    thread.start()
    poll("the waiter in line", ClaimWaiter.objects.exists)
    Claim.objects.filter(pk=held.claim.pk).update(expires_at=held.claim.acquired_at)

    with pytest.raises(ClaimConflict) as conflict:
        services.claim(
            story="ci", todolist="deploy", agent_id="rude", actor=Actor(source="cli", user=rude)
        )
    thread.join(timeout=60)

    assert conflict.value.context["waiting"] in (0, 1)
    assert results and results[0].claim.agent_id == "patient"


def test_the_api_waits_in_line_until_the_lease_is_released():
    holder = baker.make("auth.User", username="holder")
    _, key = create_token(
        baker.make("auth.User", username="waiter"), actor=Actor(source=Source.SYSTEM)
    )
    held = services.claim(
        story="ci", todolist="deploy", agent_id="a", actor=Actor(source="cli", user=holder)
    )
    answers = []

    def wait_over_http():
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            body = {"story": "ci", "todolist": "deploy", "agent_id": "job-2", "wait": 60}
            answers.append(client.post("/api/v1/claims/", body, format="json"))
        finally:
            connection.close()

    thread = threading.Thread(target=wait_over_http)
    thread.start()
    poll("the API caller in line", ClaimWaiter.objects.exists)
    services.release(
        held.claim.pk, lease_token=held.lease_token, actor=Actor(source="cli", user=holder)
    )
    thread.join(timeout=60)

    assert answers[0].status_code == 201
    assert (answers[0].json()["owner"], answers[0].json()["fencing_token"]) == ("waiter", 2)
