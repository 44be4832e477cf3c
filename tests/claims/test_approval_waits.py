"""Bounded waits for an approval request's decision (``claims.waiting``)."""

import threading
import time
from datetime import timedelta

import pytest
import redis
from django.db import connection, connections, transaction
from django.utils import timezone

from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput, NotFound
from claims import services, waiting
from claims.models import ApprovalRequest
from tests.telegram.worker import wait_for

Status = ApprovalRequest.Status


class Waiter:
    """``wait_for_decision`` on a thread of its own, with its own database connection."""

    def __init__(self, approval_id, timeout):
        self.result: ApprovalRequest | None = None
        self.error: BaseException | None = None
        self.connection = None
        self.started = time.monotonic()
        self.elapsed = 0.0
        self.thread = threading.Thread(target=self._run, args=(approval_id, timeout))
        self.thread.start()

    def _run(self, approval_id, timeout):
        # The wrapper itself: ``connection`` resolves to the calling thread's.
        self.connection = connections["default"]
        try:
            self.result = waiting.wait_for_decision(approval_id, timeout)
        except BaseException as error:
            self.error = error
        finally:
            self.elapsed = time.monotonic() - self.started
            connection.close()

    def join(self):
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.result


@pytest.fixture
def ask(agent_actor):
    def ask():
        return services.request_approval(
            kind="command", text="Restart worker-03", actor=agent_actor
        )

    return ask


@pytest.fixture
def redis_waiters(settings, test_redis, monkeypatch):
    """``redis_waiters(approval, n)``: n waiters on the request, once the process's Redis
    listener is subscribed and they all wait; only an announcement can wake them within the
    tests' bounds."""
    settings.REDIS_URL = test_redis.url
    monkeypatch.setattr(waiting, "RECHECK_INTERVAL", 25.0)

    def start(approval, count):
        waiters = [Waiter(approval.pk, 28) for _ in range(count)]
        listener = waiting._watcher()
        wait_for(listener.subscribed.is_set, message="the listener to subscribe")
        wait_for(
            lambda: len(listener._waiters.get(str(approval.pk), ())) == count,
            message="the waiters to wait",
        )
        return waiters

    return start


@pytest.mark.django_db
def test_a_decided_request_is_answered_at_once(ask, approver_actor):
    approval = ask()
    services.decide(approval.pk, "approve", actor=approver_actor)
    started = time.monotonic()
    assert waiting.wait_for_decision(approval.pk, 20).status == Status.APPROVED
    assert time.monotonic() - started < 1


@pytest.mark.django_db
def test_an_undecided_request_is_answered_as_it_is_when_time_is_up(ask):
    approval = ask()
    started = time.monotonic()
    assert waiting.wait_for_decision(str(approval.pk), 0.3).status == Status.PENDING
    assert time.monotonic() - started >= 0.3


@pytest.mark.django_db
def test_a_short_id_is_waited_for_like_the_full_one(ask):
    approval = ask()
    assert waiting.wait_for_decision(approval.short_id, 0).pk == approval.pk


@pytest.mark.django_db
def test_an_unknown_request_is_not_found():
    with pytest.raises(NotFound):
        waiting.wait_for_decision("0f0f0f0f-0000-4000-8000-000000000000", 1)


@pytest.mark.parametrize(
    "timeout", [-1, 30.5, "soon", "nan", float("inf"), True, None, [1]], ids=repr
)
def test_a_timeout_that_is_not_0_to_the_cap_is_invalid(timeout):
    with pytest.raises(InvalidInput) as raised:
        waiting.checked_timeout(timeout)
    assert "timeout" in raised.value.fields


@pytest.mark.parametrize("timeout, seconds", [(0, 0.0), ("2.5", 2.5), (30, 30.0)])
def test_a_timeout_may_be_given_as_a_number_or_its_text(timeout, seconds):
    assert waiting.checked_timeout(timeout) == seconds


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiter_lets_go_of_its_database_connection_while_it_waits(ask, approver_actor):
    approval = ask()
    waiter = Waiter(approval.pk, 20)
    wait_for(lambda: waiter.connection is not None, message="the waiter to open its connection")
    wait_for(lambda: waiter.connection.connection is None, message="the waiter to let go of it")
    assert waiter.thread.is_alive()
    services.decide(approval.pk, "approve", actor=approver_actor)
    assert waiter.join().status == Status.APPROVED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_redis_the_watcher_wakes_the_waiters_of_a_decided_request(
    ask, approver_actor, settings, monkeypatch
):
    settings.REDIS_URL = ""
    # Only the watcher's look at the database can wake them within the test's bound.
    monkeypatch.setattr(waiting, "RECHECK_INTERVAL", 25.0)
    approval, other = ask(), ask()
    waiters = [Waiter(approval.pk, 28) for _ in range(5)]
    bystander = Waiter(other.pk, 2)
    watcher = waiting._watcher()
    wait_for(
        lambda: len(watcher._waiters.get(str(approval.pk), ())) == 5, message="the waiters to wait"
    )
    services.decide(approval.pk, "deny", actor=approver_actor)
    assert {waiter.join().status for waiter in waiters} == {Status.DENIED}
    assert max(waiter.elapsed for waiter in waiters) < 10
    assert bystander.join().status == Status.PENDING
    assert bystander.elapsed >= 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_postponed_request_is_still_waited_for(ask, approver_actor):
    approval = ask()
    waiter = Waiter(approval.pk, 1)
    services.decide(approval.pk, "postpone", actor=approver_actor)
    assert waiter.join().status == Status.POSTPONED
    assert waiter.elapsed >= 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_redis_a_decision_wakes_every_waiter_at_once(ask, approver_actor, redis_waiters):
    approval = ask()
    waiters = redis_waiters(approval, 5)
    decided = time.monotonic()
    services.decide(approval.pk, "approve", actor=approver_actor)
    assert {waiter.join().status for waiter in waiters} == {Status.APPROVED}
    assert max(waiter.started + waiter.elapsed for waiter in waiters) - decided < 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_redis_an_expiry_wakes_the_waiter(ask, redis_waiters):
    approval = ask()
    [waiter] = redis_waiters(approval, 1)
    services.expire_overdue(
        actor=Actor(source=Source.SYSTEM), now=timezone.now() + timedelta(days=30)
    )
    assert waiter.join().status == Status.EXPIRED
    assert waiter.elapsed < 5


@pytest.mark.django_db(transaction=True)
def test_a_decision_is_announced_only_once_committed(ask, approver_actor, settings, test_redis):
    settings.REDIS_URL = test_redis.url
    approval = ask()
    subscription = redis.Redis.from_url(test_redis.url).pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(waiting.CHANNEL)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.decide(approval.pk, "approve", actor=approver_actor)
            raise RuntimeError("rolled back")
        assert subscription.get_message(timeout=0.3) is None
        services.decide(approval.pk, "approve", actor=approver_actor)
        message = subscription.get_message(timeout=5)
        assert message is not None and message["data"] == str(approval.pk).encode()
    finally:
        subscription.close()


@pytest.mark.django_db(transaction=True)
def test_a_decision_commits_even_when_redis_is_down(ask, approver_actor, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/7"
    approval = ask()
    services.decide(approval.pk, "approve", actor=approver_actor)
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED
