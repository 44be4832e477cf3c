"""The outbox in-process: enqueueing, the retry and dead-letter policy, requeue, recovery.

Delivery here runs in the test process against the fake Bot API over real HTTP; the same code on
real worker processes is exercised in test_delivery.py.
"""

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone
from django_q.models import OrmQ
from model_bakery import baker

from audit.models import AuditEvent
from backoffice import queues
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted
from telegram_bridge import dead_letters, delivery, outbox, tasks
from telegram_bridge.models import OutboundMessage

from .outbound import outbound_message

Status = OutboundMessage.Status


@pytest.fixture
def fast_retries(settings):
    settings.TELEGRAM_RETRY_TOTAL = 1
    settings.TELEGRAM_RETRY_BACKOFF = 0.01
    settings.TELEGRAM_RETRY_BACKOFF_MAX = 0.05
    settings.TELEGRAM_READ_TIMEOUT = 0.5
    settings.OUTBOX_BACKOFF_BASE = 0.05
    settings.OUTBOX_BACKOFF_MAX = 0.1
    settings.OUTBOX_INLINE_WAIT_MAX = 5.0


@pytest.fixture
def requeuer(db):
    user = baker.make("auth.User", username="operator", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="requeue_outboundmessage"))
    return Actor(source=Source.ADMIN, user=user)


def queue(chat_id=1001, key="event:1", method="sendMessage", payload=None):
    with transaction.atomic():
        return outbox.enqueue(
            method=method,
            chat_id=chat_id,
            payload={"text": "hello"} if payload is None else payload,
            dedupe_key=key,
        )


def delivered(message):
    """Deliver ``message`` in this process and return it as delivery left it in the database."""
    delivery.deliver(message.pk)
    message.refresh_from_db()
    return message


# --- Enqueueing ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_same_dedupe_key_twice_queues_one_message(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = queue(key="approval:1:requested")
    with django_capture_on_commit_callbacks(execute=True):
        again = queue(key="approval:1:requested", payload={"text": "different"})

    assert again.pk == first.pk
    assert OutboundMessage.objects.count() == 1
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_enqueue_in_rolled_back_transaction_leaves_no_row_and_no_task(
    django_capture_on_commit_callbacks,
):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        queue()
        raise RuntimeError("the change failed")

    assert callbacks == []
    assert OutboundMessage.objects.count() == 0
    assert OrmQ.objects.count() == 0


@pytest.mark.django_db
def test_message_reaches_the_queue_only_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message = queue()
        assert OrmQ.objects.count() == 0

    assert message.status == Status.QUEUED
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_unreachable_broker_after_commit_is_logged_and_left_to_the_sweep(
    django_capture_on_commit_callbacks, monkeypatch, caplog
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(queues, "queue", broker_down)
    with (
        caplog.at_level(logging.WARNING, logger="telegram_bridge.outbox"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        message = queue()

    assert OutboundMessage.objects.get(pk=message.pk).status == Status.QUEUED
    assert "the sweep will send it" in caplog.text


@pytest.mark.django_db
def test_enqueue_names_every_bad_argument():
    with pytest.raises(InvalidInput) as raised:
        outbox.enqueue(method="", chat_id="12", payload=[], dedupe_key=" ")

    assert set(raised.value.fields) == {"method", "chat_id", "payload", "dedupe_key"}
    assert OutboundMessage.objects.count() == 0


@pytest.mark.django_db
def test_chat_id_joins_the_payload_except_for_callback_answers():
    message = queue(chat_id=-100, key="a")
    answer = queue(
        chat_id=-100, key="b", method="answerCallbackQuery", payload={"callback_query_id": "7"}
    )

    assert message.payload == {"chat_id": -100, "text": "hello"}
    assert answer.payload == {"callback_query_id": "7"}


# --- Delivery against the fake Bot API -------------------------------------------------------


@pytest.mark.django_db
def test_delivered_message_is_sent_with_its_telegram_message_id(fake_telegram, fast_retries):
    message = delivered(queue())

    sent = fake_telegram.control.sent(chat_id=1001, method="sendMessage")
    assert message.status == Status.SENT
    assert message.attempts == 1
    assert message.sent_at is not None
    assert [entry["message_id"] for entry in sent] == [message.telegram_message_id]
    assert sent[0]["payload"]["text"] == "hello"


@pytest.mark.django_db
def test_delivering_a_sent_message_again_calls_nobody(fake_telegram, fast_retries):
    message = queue()
    delivery.deliver(message.pk)

    delivery.deliver(message.pk)

    assert len(fake_telegram.control.sent()) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", [400, 403])
def test_refusal_kills_the_message_after_exactly_one_call(fake_telegram, fast_retries, status):
    fake_telegram.control.inject("sendMessage", status, count=5)

    message = delivered(queue())

    assert message.status == Status.DEAD
    assert message.attempts == 1
    assert message.last_status_code == status
    assert message.last_error.startswith("PermanentError:")
    assert fake_telegram.control.stats()["calls"]["sendMessage"] == 1


@pytest.mark.django_db
def test_5xx_burst_longer_than_the_client_retries_is_retried_by_the_outbox(
    fake_telegram, fast_retries
):
    fake_telegram.control.inject("sendMessage", 503, count=3)

    message = delivered(queue())

    assert message.status == Status.SENT
    assert message.attempts == 2
    assert len(fake_telegram.control.sent()) == 1


@pytest.mark.django_db
def test_message_is_dead_once_retries_are_exhausted(fake_telegram, fast_retries, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    fake_telegram.control.inject("sendMessage", 500, count=100)

    message = delivered(queue())

    assert message.status == Status.DEAD
    assert message.attempts == 3
    assert message.last_status_code == 500
    assert fake_telegram.control.sent() == []


@pytest.mark.django_db
def test_429_pauses_the_chat_and_delivers_after_retry_after(fake_telegram, fast_retries):
    fake_telegram.control.inject("sendMessage", 429, retry_after=2)

    message = delivered(queue())

    assert message.status == Status.SENT
    # A 429 is a refusal: Telegram did nothing, so it is not counted as an attempt.
    assert message.attempts == 1
    assert message.sent_at - message.failed_at >= timedelta(seconds=2)
    assert fake_telegram.control.stats()["too_many_requests"] == 1


@pytest.mark.django_db
def test_long_retry_after_is_handed_to_the_scheduler(fake_telegram, fast_retries, settings):
    from django_q.models import Schedule

    settings.OUTBOX_INLINE_WAIT_MAX = 1.0
    fake_telegram.control.inject("sendMessage", 429, retry_after=30)

    message = delivered(queue())

    retry = Schedule.objects.get(func=outbox.DELIVER_TASK)
    assert message.status == Status.FAILED
    assert message.next_attempt_at >= message.failed_at + timedelta(seconds=30)
    assert retry.schedule_type == Schedule.ONCE
    assert retry.next_run >= message.next_attempt_at - timedelta(seconds=1)


@pytest.mark.django_db
def test_connection_reset_is_retried_until_delivered(fake_telegram, fast_retries):
    fake_telegram.control.inject_reset("sendMessage", count=2)

    message = delivered(queue())

    assert message.status == Status.SENT
    assert len(fake_telegram.control.sent()) == 1


@pytest.mark.django_db
def test_read_timeout_on_send_is_retried_with_bounded_duplicates(
    fake_telegram, fast_retries, settings
):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    # The fake acts on the hung call too: the first answer is lost, the message arrived.
    fake_telegram.control.inject_hang("sendMessage", 1.0, count=1)

    message = delivered(queue())

    assert message.status == Status.SENT
    assert message.attempts == 2
    assert 1 <= len(fake_telegram.control.sent(method="sendMessage")) <= message.attempts


@pytest.mark.django_db
def test_edit_that_changes_nothing_counts_as_delivered(fake_telegram, fast_retries):
    original = delivered(queue(key="original", payload={"text": "Approve?"}))
    edit = {"message_id": original.telegram_message_id, "text": "Approve?"}

    message = delivered(queue(key="edit", method="editMessageText", payload=edit))

    assert message.status == Status.SENT


@pytest.mark.django_db
def test_drain_delivers_every_due_message(fake_telegram, fast_retries):
    for chat in range(5):
        queue(chat_id=2000 + chat, key=f"drain:{chat}")
    later = queue(chat_id=3000, key="later")
    OutboundMessage.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )

    outcomes = delivery.drain(seconds=20)

    assert outcomes == {Status.SENT: 5}
    assert OutboundMessage.objects.filter(status=Status.SENT).count() == 5
    assert OutboundMessage.objects.get(pk=later.pk).status == Status.QUEUED


# --- Recovery of rows a worker left behind ---------------------------------------------------


@pytest.mark.django_db
def test_sweep_recovers_a_message_left_sending_by_a_dead_worker(
    fake_telegram, fast_retries, settings
):
    settings.OUTBOX_SENDING_LEASE = 60
    message = queue()
    OutboundMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING, attempts=1, updated_at=timezone.now() - timedelta(minutes=5)
    )

    result = tasks.sweep()

    message.refresh_from_db()
    assert result["recovered"] == 1
    assert message.status == Status.SENT
    assert message.attempts == 2


@pytest.mark.django_db
def test_recent_sending_row_is_left_to_its_worker(settings):
    settings.OUTBOX_SENDING_LEASE = 60
    message = queue()
    OutboundMessage.objects.filter(pk=message.pk).update(status=Status.SENDING, attempts=1)

    assert delivery.recover_stale() == 0
    assert OutboundMessage.objects.get(pk=message.pk).status == Status.SENDING


@pytest.mark.django_db
def test_stale_row_out_of_attempts_is_dead(settings):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    message = queue()
    OutboundMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING, attempts=2, updated_at=timezone.now() - timedelta(hours=1)
    )

    assert delivery.recover_stale() == 1
    assert OutboundMessage.objects.get(pk=message.pk).status == Status.DEAD


def test_backoff_doubles_with_jitter_up_to_the_cap(settings):
    settings.OUTBOX_BACKOFF_BASE = 2.0
    settings.OUTBOX_BACKOFF_MAX = 10.0

    assert 1.0 <= delivery.backoff(1) <= 2.0
    assert 2.0 <= delivery.backoff(2) <= 4.0
    assert 5.0 <= delivery.backoff(10) <= 10.0


# --- Requeue ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_requeue_gives_a_dead_message_fresh_attempts_and_is_audited(
    requeuer, django_capture_on_commit_callbacks
):
    message = outbound_message()

    with django_capture_on_commit_callbacks(execute=True):
        assert dead_letters.requeue(message.pk, actor=requeuer) is True

    message.refresh_from_db()
    event = AuditEvent.objects.get(action="telegram.requeued")
    assert (message.status, message.attempts, message.requeues) == (Status.QUEUED, 0, 1)
    assert event.object_id == str(message.pk)
    assert event.actor == requeuer.user
    assert event.details["previous_status"] == Status.DEAD
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_requeue_needs_the_permission(approver):
    message = outbound_message()

    with pytest.raises(NotPermitted):
        dead_letters.requeue(message.pk, actor=Actor(source=Source.ADMIN, user=approver))

    assert OutboundMessage.objects.get(pk=message.pk).status == Status.DEAD
    assert not AuditEvent.objects.filter(action="telegram.requeued").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.SENT, Status.SENDING])
def test_requeue_refuses_a_message_that_may_have_been_sent(requeuer, status):
    message = outbound_message(status)

    with pytest.raises(InvalidTransition) as raised:
        dead_letters.requeue(message.pk, actor=requeuer)

    assert raised.value.status == status


@pytest.mark.django_db
def test_requeue_of_a_queued_message_changes_nothing(requeuer):
    message = outbound_message(Status.QUEUED)

    assert dead_letters.requeue(message.pk, actor=requeuer) is False
    assert not AuditEvent.objects.filter(action="telegram.requeued").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("message_id", [999999, "abc", None])
def test_requeue_of_an_unknown_message_is_not_found(requeuer, message_id):
    with pytest.raises(NotFound):
        dead_letters.requeue(message_id, actor=requeuer)


@pytest.mark.django_db
def test_requeue_many_reports_requeued_and_skipped(requeuer):
    dead = [outbound_message(), outbound_message(Status.FAILED)]
    sent = outbound_message(Status.SENT)

    report = dead_letters.requeue_many([*(m.pk for m in dead), sent.pk, 424242], actor=requeuer)

    assert report.requeued == [m.pk for m in dead]
    assert str(report) == f"2 requeued; 2 skipped: #{sent.pk} is sent, #424242 does not exist"


@pytest.mark.django_db
def test_auto_requeue_respects_count_window_batch_and_refusals(settings):
    settings.OUTBOX_REQUEUE_MAX = 3
    settings.OUTBOX_REQUEUE_WINDOW_HOURS = 72
    settings.OUTBOX_REQUEUE_BATCH = 2
    now = timezone.now()
    oldest = outbound_message(failed_at=now - timedelta(hours=5))
    newer = outbound_message(failed_at=now - timedelta(hours=1))
    newest = outbound_message(failed_at=now)
    outbound_message(requeues=3)
    outbound_message(failed_at=now - timedelta(hours=73))
    outbound_message(last_status_code=403, last_error="PermanentError: Forbidden")

    requeued = dead_letters.auto_requeue()

    assert [m.pk for m in requeued] == [oldest.pk, newer.pk]
    assert [m.pk for m in dead_letters.requeue_candidates()] == [newest.pk]
    events = AuditEvent.objects.filter(action="telegram.requeued")
    assert {e.source for e in events} == {Source.SYSTEM}
    assert {e.actor_label for e in events} == {"auto_requeue"}


@pytest.mark.django_db
def test_auto_requeue_retries_a_message_lost_with_its_worker():
    lost = outbound_message(last_status_code=None, last_error="The worker stopped while sending")

    assert dead_letters.auto_requeue() == [lost]
