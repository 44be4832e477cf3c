"""Delivering the outbox, on a worker.

``deliver`` takes one row (``queued``/``failed`` and due → ``sending``) so that no two workers send
the same message, waits for a rate-limit slot, calls the Bot API and records the outcome; ``drain``
does the same a batch at a time, and ``recover_stale`` puts back rows a dead worker left behind.

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
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from backoffice.redaction import redact

from . import ratelimit
from .client import BotApiError, PermanentError, RetryAfter, get_client
from .models import OutboundMessage
from .outbox import DELIVER_TASK

logger = logging.getLogger(__name__)

Status = OutboundMessage.Status

DUE = (Status.QUEUED, Status.FAILED)

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
