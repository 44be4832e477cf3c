"""The transactional outbox: Bot API calls written with the change that causes them.

``enqueue`` runs inside the caller's transaction, so a message exists exactly when the change that
caused it was committed; after commit the message is handed to a django-q2 worker. ``deliver``
runs on the worker: it takes the row (``queued``/``failed`` and due → ``sending``) so that no two
workers send the same message, waits for a rate-limit slot, calls the Bot API and records the
outcome.

Delivery is at least once. A row is marked ``sending`` before the call and ``sent`` after it; if
the worker dies in between, or Telegram does not answer in time, nobody knows whether the message
arrived, so it is sent again (after a backoff, never in a tight loop). ``attempts`` counts the calls
Telegram may have acted on, so duplicates are bounded by ``OUTBOX_MAX_ATTEMPTS`` (per requeue).
"""

import logging
import random
import time
from collections import Counter
from datetime import timedelta
from functools import partial
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from audit.actors import system_actor
from audit.services import record
from backoffice.redaction import redact
from claims.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted

from . import ratelimit
from .client import BotApiError, PermanentError, RetryAfter, get_client
from .models import OutboundMessage

logger = logging.getLogger(__name__)

Status = OutboundMessage.Status

DELIVER_TASK = "telegram_bridge.tasks.deliver"
REQUEUE_PERMISSION = "telegram_bridge.requeue_outboundmessage"
REQUEUABLE = (Status.FAILED, Status.DEAD)
DUE = (Status.QUEUED, Status.FAILED)

# Bot API methods that address a callback query or an inline message rather than a chat.
METHODS_WITHOUT_CHAT = frozenset({"answerCallbackQuery"})

# Telegram refuses an edit that changes nothing; after a lost answer that means the edit landed.
NOT_MODIFIED = "message is not modified"


class Attempted(NamedTuple):
    """What one delivery attempt left behind: the row's status and, if due again, when (seconds)."""

    status: str
    retry_in: float | None = None


# --- Enqueueing (inside the caller's transaction) -------------------------------------------


def enqueue(*, method, chat_id, payload, dedupe_key):
    """Queue one Bot API call; call it inside the transaction of the change that causes it.

    ``payload`` holds the Bot API parameters; ``chat_id`` is added to it for methods that take one.
    The same ``dedupe_key`` again returns the existing row, so one domain event never sends two
    messages. The worker hears of the message only after commit: a rolled-back change leaves
    neither a row nor a task.
    """
    fields = {}
    if not isinstance(method, str) or not method.strip():
        fields["method"] = "must be a Bot API method name"
    if isinstance(chat_id, bool) or not isinstance(chat_id, int):
        fields["chat_id"] = "must be an integer chat id"
    if not isinstance(payload, dict):
        fields["payload"] = "must be a dict of Bot API parameters"
    if not isinstance(dedupe_key, str) or not dedupe_key.strip():
        fields["dedupe_key"] = "must not be empty"
    elif len(dedupe_key) > OutboundMessage._meta.get_field("dedupe_key").max_length:
        fields["dedupe_key"] = "is too long"
    if fields:
        raise InvalidInput(fields)

    existing = OutboundMessage.objects.filter(dedupe_key=dedupe_key).first()
    if existing is not None:
        return existing
    if method not in METHODS_WITHOUT_CHAT:
        payload = {"chat_id": chat_id, **payload}
    try:
        with transaction.atomic():
            message = OutboundMessage.objects.create(
                method=method,
                chat_id=chat_id,
                payload=payload,
                dedupe_key=dedupe_key,
                next_attempt_at=timezone.now(),
            )
    except IntegrityError:
        # A concurrent transaction queued the same event first.
        return OutboundMessage.objects.get(dedupe_key=dedupe_key)
    transaction.on_commit(partial(hand_to_worker, message.pk))
    return message


def hand_to_worker(message_id):
    """Put a delivery task on the queue; if the broker is unreachable the sweep delivers later."""
    try:
        async_task(DELIVER_TASK, message_id)
    except Exception:
        # The row is committed and due, so nothing is lost: the sweep picks it up.
        logger.warning(
            "Could not queue delivery of outbound message %s; the sweep will send it.",
            message_id,
            exc_info=True,
        )


# --- Delivering (on a worker) ---------------------------------------------------------------


def deliver(message_id):
    """Deliver one message, retrying in-process while the wait is short.

    A rate-limit wait or a retry that fits in ``OUTBOX_INLINE_WAIT_MAX`` happens here, so a short
    ``retry_after`` is honoured to the second; a longer one is left to a one-off schedule at the
    message's ``next_attempt_at`` (and to the sweep, should that be lost too).
    """
    deadline = time.monotonic() + settings.OUTBOX_INLINE_WAIT_MAX
    while True:
        message = _take(OutboundMessage.objects.filter(pk=message_id))
        if message is None:
            return
        attempted = _attempt(message, max_wait=deadline - time.monotonic())
        if attempted.retry_in is None:
            return
        if time.monotonic() + attempted.retry_in > deadline:
            _schedule_retry(message_id, attempted.retry_in)
            return
        time.sleep(attempted.retry_in)


def drain(seconds=None):
    """Deliver due messages one after another until none is due or ``seconds`` have passed.

    Any number of workers may drain at once: each takes its own rows. Returns how many messages
    ended in each status.
    """
    deadline = time.monotonic() + (seconds or settings.OUTBOX_DRAIN_SECONDS)
    outcomes = Counter()
    while time.monotonic() < deadline:
        message = _take(OutboundMessage.objects.all())
        if message is None:
            break
        max_wait = min(settings.OUTBOX_INLINE_WAIT_MAX, deadline - time.monotonic())
        outcomes[_attempt(message, max_wait=max_wait).status] += 1
    return dict(outcomes)


def recover_stale(now=None):
    """Put rows left ``sending`` by a worker that died mid-send back in line; returns how many.

    The call may or may not have reached Telegram, so the message is sent again (at least once),
    unless it has used up its attempts, in which case it is dead.
    """
    now = now or timezone.now()
    stale = OutboundMessage.objects.filter(
        status=Status.SENDING,
        updated_at__lt=now - timedelta(seconds=settings.OUTBOX_SENDING_LEASE),
    )
    error = "The worker stopped while sending; Telegram may or may not have received it."
    with transaction.atomic():
        exhausted = stale.filter(attempts__gte=settings.OUTBOX_MAX_ATTEMPTS).update(
            status=Status.DEAD, last_error=error, failed_at=now, updated_at=now
        )
        retried = stale.update(
            status=Status.FAILED,
            last_error=error,
            failed_at=now,
            next_attempt_at=now,
            updated_at=now,
        )
    if exhausted or retried:
        logger.warning(
            "Recovered %s outbound messages left sending by a stopped worker (%s dead).",
            exhausted + retried,
            exhausted,
        )
    return exhausted + retried


def _take(candidates):
    """Mark the first due message among ``candidates`` as ``sending`` and count the attempt.

    On PostgreSQL the row lock with ``skip_locked`` lets concurrent workers pass each other; on
    SQLite the write transaction itself serialises them. Either way one message, one sender.
    """
    with transaction.atomic():
        message = (
            candidates.select_for_update(skip_locked=True)
            .filter(status__in=DUE, next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at", "id")
            .first()
        )
        if message is None:
            return None
        message.status = Status.SENDING
        message.attempts += 1
        message.save(update_fields=["status", "attempts", "updated_at"])
    return message


def _attempt(message, *, max_wait):
    """Wait for a rate-limit slot, make the call and record what happened."""
    wait = ratelimit.reserve(message.chat_id)
    if wait > 0:
        if wait > max_wait:
            return _postpone(message, wait)
        time.sleep(wait)
    try:
        result = get_client().call(message.method, message.payload)
    except RetryAfter as error:
        return _refused(message, error)
    except PermanentError as error:
        if NOT_MODIFIED in (error.description or ""):
            return _sent(message, None)
        return _failed(message, error, dead=True)
    except BotApiError as error:
        return _failed(message, error, dead=message.attempts >= settings.OUTBOX_MAX_ATTEMPTS)
    return _sent(message, result)


def _finish(message, **fields):
    """Write the outcome, unless the sweep gave the row to another worker in the meantime."""
    OutboundMessage.objects.filter(
        pk=message.pk, status=Status.SENDING, attempts=message.attempts
    ).update(updated_at=timezone.now(), **fields)


def _sent(message, result):
    message_id = result.get("message_id") if isinstance(result, dict) else None
    _finish(
        message,
        status=Status.SENT,
        telegram_message_id=message_id,
        sent_at=timezone.now(),
        last_error="",
        last_status_code=None,
    )
    return Attempted(Status.SENT)


def _error_text(error):
    return redact(f"{type(error).__name__}: {error.description}")


def _failed(message, error, *, dead):
    """A transient failure is retried after an exponential backoff with jitter; else it is dead."""
    now = timezone.now()
    fields = {
        "last_error": _error_text(error),
        "last_status_code": error.status_code,
        "failed_at": now,
    }
    if dead:
        _finish(message, status=Status.DEAD, **fields)
        logger.warning(
            "Outbound message %s is dead after %s attempts: %s",
            message.pk,
            message.attempts,
            fields["last_error"],
        )
        return Attempted(Status.DEAD)
    retry_in = backoff(message.attempts)
    _finish(
        message,
        status=Status.FAILED,
        next_attempt_at=now + timedelta(seconds=retry_in),
        **fields,
    )
    return Attempted(Status.FAILED, retry_in)


def _refused(message, error):
    """A 429: Telegram did nothing, so it is no attempt; pause the chat (or all) and wait."""
    retry_in = max(float(error.retry_after or 1), 1.0)
    ratelimit.pause(message.chat_id if error.chat_scoped else None, retry_in)
    now = timezone.now()
    _finish(
        message,
        status=Status.FAILED,
        attempts=F("attempts") - 1,
        next_attempt_at=now + timedelta(seconds=retry_in),
        last_error=_error_text(error),
        last_status_code=error.status_code,
        failed_at=now,
    )
    return Attempted(Status.FAILED, retry_in)


def _postpone(message, wait):
    """The rate limit asks for a longer wait than this worker may spend: hand the row back."""
    _finish(
        message,
        status=Status.QUEUED,
        attempts=F("attempts") - 1,
        next_attempt_at=timezone.now() + timedelta(seconds=wait),
    )
    return Attempted(Status.QUEUED, wait)


def backoff(attempts):
    """Seconds before attempt ``attempts + 1``: doubling from the base, capped, with jitter."""
    ceiling = min(
        settings.OUTBOX_BACKOFF_MAX, settings.OUTBOX_BACKOFF_BASE * 2 ** max(attempts - 1, 0)
    )
    return ceiling * random.uniform(0.5, 1.0)


def _schedule_retry(message_id, retry_in):
    schedule(
        DELIVER_TASK,
        message_id,
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() + timedelta(seconds=retry_in),
    )


# --- Dead letters ---------------------------------------------------------------------------


def requeue(message_id, *, actor):
    """Give a failed or dead message a fresh set of attempts; audited as ``telegram.requeued``.

    Returns False when the message is already queued (nothing to do). A message being sent or
    already sent cannot be requeued: that would send it twice.
    """
    if not actor.has_perm(REQUEUE_PERMISSION):
        raise NotPermitted(f"{actor.name} may not requeue outbound messages.")
    with transaction.atomic():
        try:
            message = OutboundMessage.objects.select_for_update().get(pk=int(message_id))
        except (OutboundMessage.DoesNotExist, TypeError, ValueError, OverflowError):
            raise NotFound(f"No outbound message with id {message_id}.") from None
        if message.status == Status.QUEUED:
            return False
        _requeue(message, actor=actor)
    return True


class RequeueReport(NamedTuple):
    """What ``requeue_many`` did: the ids it requeued and why it skipped the others."""

    requeued: list
    skipped: list

    def __str__(self):
        text = f"{len(self.requeued)} requeued"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped: {', '.join(self.skipped)}"
        return text


def requeue_many(message_ids, *, actor):
    """``requeue`` each message in its own transaction; one that cannot be requeued is skipped."""
    if not actor.has_perm(REQUEUE_PERMISSION):
        raise NotPermitted(f"{actor.name} may not requeue outbound messages.")
    report = RequeueReport([], [])
    for message_id in message_ids:
        try:
            changed = requeue(message_id, actor=actor)
        except InvalidTransition as error:
            report.skipped.append(f"#{message_id} is {error.status}")
        except NotFound:
            report.skipped.append(f"#{message_id} does not exist")
        else:
            if changed:
                report.requeued.append(message_id)
            else:
                report.skipped.append(f"#{message_id} is already queued")
    return report


def requeue_candidates(now=None):
    """Dead messages the automatic requeue may retry, oldest failure first, one batch.

    Only messages that died of transient failures (retries exhausted, a worker lost), failed
    within ``OUTBOX_REQUEUE_WINDOW_HOURS`` and were requeued fewer than ``OUTBOX_REQUEUE_MAX``
    times. A refusal (400, 401, 403, 404) needs a person to fix its cause first.
    """
    now = now or timezone.now()
    return (
        OutboundMessage.objects.filter(
            status=Status.DEAD,
            requeues__lt=settings.OUTBOX_REQUEUE_MAX,
            failed_at__gte=now - timedelta(hours=settings.OUTBOX_REQUEUE_WINDOW_HOURS),
        )
        .filter(Q(last_status_code__isnull=True) | ~Q(last_status_code__range=(400, 499)))
        .order_by("failed_at", "id")[: settings.OUTBOX_REQUEUE_BATCH]
    )


def auto_requeue(now=None):
    """Requeue one batch of ``requeue_candidates``; returns the requeued messages."""
    actor = system_actor("auto_requeue")
    requeued = []
    with transaction.atomic():
        candidates = requeue_candidates(now).select_for_update(skip_locked=True)
        for message in candidates:
            _requeue(message, actor=actor)
            requeued.append(message)
    return requeued


def _requeue(message, *, actor):
    if message.status not in REQUEUABLE:
        raise InvalidTransition(
            f"#{message.pk} is {message.status}; only failed or dead messages can be requeued.",
            status=message.status,
        )
    previous = message.status
    message.status = Status.QUEUED
    message.attempts = 0
    message.requeues += 1
    message.next_attempt_at = timezone.now()
    message.save(update_fields=["status", "attempts", "requeues", "next_attempt_at", "updated_at"])
    record(
        "telegram.requeued",
        actor=actor,
        obj=message,
        details={
            "method": message.method,
            "chat_id": message.chat_id,
            "previous_status": previous,
            "requeues": message.requeues,
            "last_error": message.last_error,
            "last_status_code": message.last_status_code,
        },
    )
    transaction.on_commit(partial(hand_to_worker, message.pk))
