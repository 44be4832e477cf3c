"""Delivery end to end: real ``qcluster`` workers, the fake Bot API over HTTP, injected faults.

Outcomes are awaited by polling the database with a deadline. Gaps in time (a 429's
``retry_after``) are checked from the fake's own records: that is correctness, not speed.
"""

import time

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ
from django_q.tasks import async_task

from telegram_bridge import outbox
from telegram_bridge.models import OutboundMessage
from tests.telegram.worker import wait_for

Status = OutboundMessage.Status
SWEEP_TASK = "telegram_bridge.tasks.sweep"


def queue(count=1, *, first_chat=5000, prefix="msg"):
    """Enqueue ``count`` messages, one per chat, committed (so workers see them)."""
    with transaction.atomic():
        return [
            outbox.enqueue(
                method="sendMessage",
                chat_id=first_chat + n,
                payload={"text": f"{prefix} {n}"},
                dedupe_key=f"{prefix}:{n}",
            )
            for n in range(count)
        ]


def statuses(messages):
    return list(
        OutboundMessage.objects.filter(pk__in=[m.pk for m in messages]).values_list(
            "status", flat=True
        )
    )


def settled(messages, *, into=(Status.SENT, Status.DEAD)):
    return lambda: all(status in into for status in statuses(messages))


def await_outcome(messages, workers, *, timeout=60, into=(Status.SENT, Status.DEAD)):
    try:
        wait_for(settled(messages, into=into), timeout=timeout, message="messages to settle")
    except AssertionError:
        print(workers.output())
        raise


def sent_texts(fake, chat_id):
    return [entry["payload"]["text"] for entry in fake.control.sent(chat_id=chat_id)]


@pytest.mark.django_db(transaction=True)
def test_worker_delivers_a_committed_message(qcluster, fake_telegram):
    qcluster.start()
    [message] = queue()

    await_outcome([message], qcluster)

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.telegram_message_id is not None
    assert sent_texts(fake_telegram, message.chat_id) == ["msg 0"]


@pytest.mark.django_db(transaction=True)
def test_429_is_delivered_not_before_retry_after(qcluster, fake_telegram):
    retry_after = 2
    fake_telegram.control.inject("sendMessage", 429, retry_after=retry_after)
    qcluster.start()
    [message] = queue()

    # The moment the fake is seen to have answered the 429 is at or after the answer itself, so
    # the gap measured from it can only be shorter than the real one.
    wait_for(
        lambda: fake_telegram.control.stats()["too_many_requests"] == 1,
        interval=0.01,
        message="the 429",
    )
    refused_at = time.time()
    await_outcome([message], qcluster)

    [delivery] = fake_telegram.control.sent(chat_id=message.chat_id)
    message.refresh_from_db()
    assert message.status == Status.SENT
    # Allow for how late the poll above can notice the 429 (one poll and one control call).
    assert delivery["at"] - refused_at >= retry_after - 0.1
    assert fake_telegram.control.stats()["calls"]["sendMessage"] == 2


@pytest.mark.django_db(transaction=True)
def test_5xx_burst_is_retried_until_delivered(qcluster, fake_telegram):
    # Each attempt is three calls (the client retries twice itself, FAST_RETRIES), so six
    # failures take two attempts; the outbox's backoff brings the third.
    fake_telegram.control.inject("sendMessage", 502, count=2)
    fake_telegram.control.inject("sendMessage", 503, count=2)
    fake_telegram.control.inject("sendMessage", 500, count=2)
    qcluster.start()
    [message] = queue()

    await_outcome([message], qcluster)

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.attempts == 3
    assert fake_telegram.control.stats()["calls"]["sendMessage"] == 7
    assert sent_texts(fake_telegram, message.chat_id) == ["msg 0"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [400, 403])
def test_refusal_is_dead_at_once_after_exactly_one_call(qcluster, fake_telegram, status):
    fake_telegram.control.inject("sendMessage", status, count=10)
    qcluster.start()
    [message] = queue()

    await_outcome([message], qcluster)

    message.refresh_from_db()
    assert message.status == Status.DEAD
    assert message.last_status_code == status
    assert fake_telegram.control.stats()["calls"]["sendMessage"] == 1


@pytest.mark.django_db(transaction=True)
def test_exhausted_message_is_listed_in_admin_and_its_requeue_button_delivers_it(
    qcluster, fake_telegram, admin_client
):
    fake_telegram.control.inject("sendMessage", 500, count=9)
    qcluster.start(OUTBOX_MAX_ATTEMPTS=3)
    [message] = queue()

    await_outcome([message], qcluster)
    message.refresh_from_db()
    assert message.status == Status.DEAD
    assert message.attempts == 3
    listing = admin_client.get(reverse("admin:telegram_bridge_outboundmessage_changelist"))
    requeue_url = reverse("admin:telegram_bridge_outboundmessage_requeue", args=[message.pk])
    assert requeue_url in listing.text

    assert "Yes, requeue" in admin_client.get(requeue_url).text
    admin_client.post(requeue_url)
    await_outcome([message], qcluster, into=(Status.SENT,))

    message.refresh_from_db()
    assert (message.requeues, message.attempts) == (1, 1)
    assert sent_texts(fake_telegram, message.chat_id) == ["msg 0"]


@pytest.mark.django_db(transaction=True)
def test_connection_reset_is_retried_until_delivered(qcluster, fake_telegram):
    # A reset after the request went out is ambiguous for sendMessage: one attempt each.
    fake_telegram.control.inject_reset("sendMessage", count=4)
    qcluster.start(OUTBOX_MAX_ATTEMPTS=8)
    [message] = queue()

    await_outcome([message], qcluster)

    message.refresh_from_db()
    assert message.status == Status.SENT, message.last_error
    assert sent_texts(fake_telegram, message.chat_id) == ["msg 0"]


@pytest.mark.django_db(transaction=True)
def test_read_timeout_delivers_at_least_once_with_duplicates_bounded(qcluster, fake_telegram):
    max_attempts = 4
    # Each hung call is acted on by the fake after the client gave up waiting: a lost answer.
    fake_telegram.control.inject_hang("sendMessage", 1.5, count=2)
    qcluster.start(TELEGRAM_READ_TIMEOUT=0.5, OUTBOX_MAX_ATTEMPTS=max_attempts)
    [message] = queue()

    await_outcome([message], qcluster)
    wait_for(
        lambda: len(fake_telegram.control.sent(chat_id=message.chat_id)) == 3,
        message="the hung calls to land",
    )

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.attempts == 3
    assert len(fake_telegram.control.sent(chat_id=message.chat_id)) <= max_attempts


@pytest.mark.django_db(transaction=True)
def test_no_message_is_lost_when_a_worker_is_killed_mid_send(qcluster, fake_telegram):
    fake_telegram.control.inject_hang("sendMessage", 3, count=1)
    [crashed] = qcluster.start()
    messages = queue(10)
    wait_for(
        lambda: OutboundMessage.objects.filter(status=Status.SENDING).exists(),
        message="a message in flight",
    )

    crashed.kill()
    lease = 1
    qcluster.start(OUTBOX_SENDING_LEASE=lease)
    # Tasks the dead cluster had taken from the queue are gone with it; the sweep (on its
    # schedule in production) finds their rows and the one left "sending".
    wait_for(
        lambda: (
            not OutboundMessage.objects.filter(
                status=Status.SENDING,
                updated_at__gt=timezone.now() - timezone.timedelta(seconds=lease + 0.5),
            ).exists()
        ),
        message="the lease to run out",
    )
    async_task(SWEEP_TASK)
    await_outcome(messages, qcluster, into=(Status.SENT,))

    deliveries = {m.chat_id: len(fake_telegram.control.sent(chat_id=m.chat_id)) for m in messages}
    assert all(count >= 1 for count in deliveries.values())
    # Only the message in flight when the worker died may arrive twice.
    assert sum(deliveries.values()) - len(messages) <= 1


@pytest.mark.django_db(transaction=True)
def test_two_clusters_draining_one_outbox_send_each_message_once(qcluster, fake_telegram):
    fake_telegram.control.configure_flood(enabled=False)
    qcluster.start(count=2, Q_WORKERS=2)
    messages = queue(60)
    # Sweeps drain the same rows the delivery tasks are after, to make them compete.
    for _ in range(4):
        async_task(SWEEP_TASK)

    await_outcome(messages, qcluster)

    assert set(statuses(messages)) == {Status.SENT}
    sent = fake_telegram.control.sent(method="sendMessage")
    assert sorted(entry["chat_id"] for entry in sent) == sorted(m.chat_id for m in messages)
    assert set(OutboundMessage.objects.values_list("attempts", flat=True)) == {1}


@pytest.mark.django_db(transaction=True)
def test_worker_on_the_redis_broker_delivers(qcluster, fake_telegram, test_redis, monkeypatch):
    from django_q.brokers.redis_broker import Redis as RedisBroker
    from django_q.conf import Conf

    # A queue of this test's own. django-q2 signs tasks with the queue name, so this process
    # takes that name too, as the worker does.
    monkeypatch.setattr(Conf, "PREFIX", test_redis.prefix)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", test_redis.prefix)
    broker = RedisBroker(list_key=test_redis.prefix)
    broker.connection = test_redis.client
    qcluster.start(
        REDIS_URL=test_redis.url,
        Q_CLUSTER_NAME=test_redis.prefix,
        TELEGRAM_RATE_REDIS_PREFIX=f"{test_redis.prefix}:tg-rate",
        CACHE_KEY_PREFIX=test_redis.prefix,
    )
    [message] = queue()

    # This test process queues through the database broker; hand the task to Redis as a
    # process configured with REDIS_URL would.
    async_task(outbox.DELIVER_TASK, message.pk, broker=broker)
    try:
        await_outcome([message], qcluster)
    finally:
        broker.delete_queue()

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert sent_texts(fake_telegram, message.chat_id) == ["msg 0"]
    # The database queue's copy of the task is still there: the worker only listened to Redis.
    assert OrmQ.objects.count() == 1
