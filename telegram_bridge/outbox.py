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
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from audit.services import record
from backoffice.actors import system_actor
from backoffice.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted
from backoffice.redaction import redact

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
    """The outcome of one delivery attempt, to be written on the row.

    ``retry_in`` says in how many seconds the message is due again, if it is; ``refused`` marks a
    429, after which the slots booked before it are stale.
    """

    status: str
    fields: dict
    retry_in: float | None = None
    refused: bool = False


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


def find(dedupe_key: str, *, lock: bool = False) -> OutboundMessage | None:
    """The message queued under ``dedupe_key``, if any; ``lock`` holds its row until commit."""
    messages = OutboundMessage.objects.select_for_update() if lock else OutboundMessage.objects
    return messages.filter(dedupe_key=dedupe_key).first()


def exists(dedupe_key: str) -> bool:
    """Whether a message was ever queued under ``dedupe_key``."""
    return OutboundMessage.objects.filter(dedupe_key=dedupe_key).exists()


def rewrite(message: OutboundMessage, parameters: dict[str, Any]) -> None:
    """Replace the parameters of a message not sent yet, so it goes out as it now should."""
    message.payload = {"chat_id": message.chat_id, **parameters}
    message.save(update_fields=["payload", "updated_at"])


def hand_to_worker(message_id):
    """Put a delivery task on the queue; if the broker is unreachable the sweep delivers later.

    A successful delivery is recorded on the message itself, so django-q2 keeps only failures.
    """
    try:
        async_task(DELIVER_TASK, message_id, save=False)
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
    message's ``next_attempt_at`` (and to the sweep, should that be lost too). Each outcome is
    committed as soon as it is known.
    """
    deadline = time.monotonic() + settings.OUTBOX_INLINE_WAIT_MAX
    while True:
        taken = _take(OutboundMessage.objects.filter(pk=message_id))
        if not taken:
            return
        [(message, send_at)] = taken
        attempted = _attempt(message, send_at, max_wait=deadline - time.monotonic())
        _record(message, attempted)
        if attempted.retry_in is None:
            return
        if time.monotonic() + attempted.retry_in > deadline:
            _schedule_retry(message_id, attempted.retry_in)
            return
        time.sleep(attempted.retry_in)


def drain(seconds=None):
    """Deliver due messages, a batch at a time, until none is due or ``seconds`` have passed.

    The bulk path: ``OUTBOX_DRAIN_BATCH`` rows are taken and booked with the rate limiter in one
    transaction, sent slot by slot, and their outcomes committed together, so a batch costs two
    commits rather than two per message. The price: a worker lost mid-batch leaves the whole
    batch ``sending``, and what it had already sent goes out again after the lease. After a 429
    the rest of the batch is handed back untried, to be booked again under the pause.

    Any number of workers may drain at once: each takes its own rows. Returns how many messages
    ended in each status.
    """
    deadline = time.monotonic() + (seconds or settings.OUTBOX_DRAIN_SECONDS)
    outcomes = Counter()
    while time.monotonic() < deadline:
        taken = _take(OutboundMessage.objects.all(), limit=settings.OUTBOX_DRAIN_BATCH)
        if not taken:
            break
        done = []
        for message, send_at in taken:
            if done and done[-1][1].refused:
                attempted = _handed_back(0.0)
            else:
                attempted = _attempt(message, send_at, max_wait=settings.OUTBOX_INLINE_WAIT_MAX)
            done.append((message, attempted))
        with transaction.atomic():
            for message, attempted in done:
                _record(message, attempted)
                outcomes[attempted.status] += 1
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


def _take(candidates, limit=1):
    """Mark up to ``limit`` due ``candidates`` as ``sending``, count the attempt, book a slot.

    Returns ``(message, send_at)`` pairs, ``send_at`` on the ``time.monotonic()`` clock. On
    PostgreSQL the row locks with ``skip_locked`` let concurrent workers pass each other; on SQLite
    the write transaction itself serialises them. Either way one message, one sender. Booking the
    rate-limit slots in the same transaction costs one commit for the whole batch.
    """
    with transaction.atomic():
        messages = list(
            candidates.select_for_update(skip_locked=True)
            .filter(status__in=DUE, next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at", "id")[:limit]
        )
        if not messages:
            return []
        OutboundMessage.objects.filter(pk__in=[message.pk for message in messages]).update(
            status=Status.SENDING, attempts=F("attempts") + 1, updated_at=timezone.now()
        )
        taken = []
        for message in messages:
            message.status = Status.SENDING
            message.attempts += 1
            wait = ratelimit.reserve(message.chat_id)
            taken.append((message, time.monotonic() + wait))
    return taken


def _attempt(message, send_at, *, max_wait):
    """Wait for the booked slot, make the call and say what should become of the row."""
    wait = send_at - time.monotonic()
    if wait > 0:
        if wait > max_wait:
            return _handed_back(wait)
        time.sleep(wait)
    try:
        result = get_client().call(message.method, message.payload)
    except RetryAfter as error:
        return _refused(message, error)
    except PermanentError as error:
        if NOT_MODIFIED in (error.description or ""):
            return _sent(None)
        return _failed(message, error, dead=True)
    except BotApiError as error:
        return _failed(message, error, dead=message.attempts >= settings.OUTBOX_MAX_ATTEMPTS)
    return _sent(result)


def _record(message, attempted):
    """Write the outcome, unless the sweep gave the row to another worker in the meantime."""
    OutboundMessage.objects.filter(
        pk=message.pk, status=Status.SENDING, attempts=message.attempts
    ).update(status=attempted.status, updated_at=timezone.now(), **attempted.fields)
    if attempted.status == Status.DEAD:
        logger.warning(
            "Outbound message %s is dead after %s attempts: %s",
            message.pk,
            message.attempts,
            attempted.fields["last_error"],
        )


def _sent(result):
    fields = {
        "telegram_message_id": result.get("message_id") if isinstance(result, dict) else None,
        "sent_at": timezone.now(),
        "last_error": "",
        "last_status_code": None,
    }
    return Attempted(Status.SENT, fields)


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
        return Attempted(Status.DEAD, fields)
    retry_in = backoff(message.attempts)
    fields["next_attempt_at"] = now + timedelta(seconds=retry_in)
    return Attempted(Status.FAILED, fields, retry_in)


def _refused(message, error):
    """A 429: Telegram did nothing, so it is no attempt; pause the chat (or all) and wait."""
    retry_in = max(float(error.retry_after or 1), 1.0)
    ratelimit.pause(message.chat_id if error.chat_scoped else None, retry_in)
    now = timezone.now()
    fields = {
        "attempts": F("attempts") - 1,
        "next_attempt_at": now + timedelta(seconds=retry_in),
        "last_error": _error_text(error),
        "last_status_code": error.status_code,
        "failed_at": now,
    }
    return Attempted(Status.FAILED, fields, retry_in, refused=True)


def _handed_back(wait):
    """The row goes back untried, due in ``wait`` seconds (a long rate-limit wait, a 429)."""
    fields = {
        "attempts": F("attempts") - 1,
        "next_attempt_at": timezone.now() + timedelta(seconds=wait),
    }
    return Attempted(Status.QUEUED, fields, wait)


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


def _require_requeue_permission(actor):
    if not actor.has_perm(REQUEUE_PERMISSION):
        raise NotPermitted(f"{actor.name} may not requeue outbound messages.")


def requeue(message_id, *, actor):
    """Give a failed or dead message a fresh set of attempts; audited as ``telegram.requeued``.

    Returns False when the message is already queued (nothing to do). A message being sent or
    already sent cannot be requeued: that would send it twice.
    """
    _require_requeue_permission(actor)
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
    """``requeue`` each message in its own transaction; one that cannot be requeued is skipped.

    Refused as a whole, even for no messages, when the actor may not requeue.
    """
    _require_requeue_permission(actor)
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
