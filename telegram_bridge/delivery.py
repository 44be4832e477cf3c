"""Delivering the outbox, on a worker.

``deliver`` takes one row (``queued``/``failed`` and due → ``sending``) so that no two workers send
the same message, waits for a rate-limit slot, calls the Bot API and records the outcome; ``drain``
does the same a batch at a time, and ``recover_stale`` puts back rows a dead worker left behind.

Messages to one chat go out in the order they were queued: only a chat's oldest unfinished
message (queued, failed or sending) can be taken, so the next one waits until it is sent or dead.
A message is taken only with a rate-limit slot it will wait for; when the chat's next slot is
further away the row stays queued, due at that slot, and nothing is booked for it.

Delivery is at least once. A row is marked ``sending`` before the call and ``sent`` after it; if
the worker dies in between, or Telegram does not answer in time, nobody knows whether the message
arrived, so it is sent again (after a backoff, never in a tight loop). ``attempts`` counts the calls
Telegram may have acted on, so duplicates are bounded by ``OUTBOX_MAX_ATTEMPTS`` (per requeue).
"""

import logging
import random
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from backoffice.redaction import redact

from . import ratelimit
from .client import BotApiError, PermanentError, RetryAfter, get_client
from .models import OutboundMessage
from .outbox import DELIVER_TASK, queue_task

logger = logging.getLogger(__name__)

Status = OutboundMessage.Status

DRAIN_TASK = "telegram_bridge.tasks.drain_backlog"
DUE = (Status.QUEUED, Status.FAILED)
# Messages not finished yet: the first of these in a chat goes out before the others.
UNFINISHED = (Status.QUEUED, Status.FAILED, Status.SENDING)

# A drain with nothing to take looks again no sooner than this, so a row another worker is
# taking at this very moment is not polled in a tight loop.
DRAIN_IDLE_MIN_SECONDS = 0.05

# Telegram refuses an edit that changes nothing; after a lost answer that means the edit landed.
NOT_MODIFIED = "message is not modified"


class Attempted(NamedTuple):
    """The outcome of one delivery attempt, to be written on the row.

    ``retry_in`` says in how many seconds the message is due again, if it is; ``pauses_all``
    marks a 429 that holds every send, after which the slots booked before it are stale.
    ``permit`` is the limiter's leave for the call, if one was made, and ``ended_at`` when it
    ended (``time.monotonic()``), which the limiter is told with the outcome.
    """

    status: str
    fields: dict[str, Any]
    retry_in: float | None = None
    pauses_all: bool = False
    permit: ratelimit.Permit | None = None
    ended_at: float = 0.0


class Taken(NamedTuple):
    """A row marked ``sending`` with its booked slot; times on the ``time.monotonic()`` clock."""

    message: OutboundMessage
    reservation: ratelimit.Reservation
    booked_at: float


def deliver(message_id: int) -> None:
    """Deliver one message, retrying in-process while the wait is short.

    A rate-limit wait or a retry that fits in ``OUTBOX_INLINE_WAIT_MAX`` happens here, so a short
    ``retry_after`` is honoured to the second; a longer one is left to a one-off schedule at the
    message's ``next_attempt_at`` (and to the sweep, should that be lost too). A message behind
    another one to its chat is left to whoever sends that one (``drain``). Each outcome is
    committed as soon as it is known.
    """
    deadline = time.monotonic() + settings.OUTBOX_INLINE_WAIT_MAX
    while True:
        taken, deferred = _take(
            OutboundMessage.objects.filter(pk=message_id),
            max_wait=max(deadline - time.monotonic(), 0.0),
        )
        if deferred:
            _schedule_retry(message_id, deferred[0])
            return
        if not taken:
            return
        [item] = taken
        attempted = _attempt(item)
        _record(item.message, attempted)
        if attempted.retry_in is None:
            return
        if time.monotonic() + attempted.retry_in > deadline:
            _schedule_retry(message_id, attempted.retry_in)
            return
        time.sleep(attempted.retry_in)


def drain(seconds: float | None = None, *, hand_on: bool = False) -> dict[str, int]:
    """Deliver due messages, a batch at a time, until none is due in time or ``seconds`` passed.

    The bulk path: up to ``OUTBOX_DRAIN_BATCH`` rows (one per chat, each its chat's oldest) are
    taken and booked with the rate limiter in one transaction, sent slot by slot, and their
    outcomes committed together, so a batch costs two commits rather than two per message. The
    price: a worker lost mid-batch leaves the whole batch ``sending``, and what it had already
    sent goes out again after the lease. After a 429 that holds every send, the rest of the batch
    is handed back untried and its slots released. When nothing is due, the drain waits for the
    next message that falls due within its time (a chat's next slot, a 429's pause) rather than
    leave it to the next sweep.

    With ``hand_on``, a drain whose time runs out while messages still wait queues a task to carry
    on (``tasks.drain_backlog``; scheduled when the next is due only later), so a long burst to
    one chat, sent by whichever worker holds its oldest message, does not wait for the sweep.

    Any number of workers may drain at once: each takes its own rows. Returns how many messages
    ended in each status.
    """
    deadline = time.monotonic() + (seconds or settings.OUTBOX_DRAIN_SECONDS)
    outcomes: Counter[str] = Counter()
    while time.monotonic() < deadline:
        taken, _deferred = _take(
            OutboundMessage.objects.all(),
            limit=settings.OUTBOX_DRAIN_BATCH,
            max_wait=settings.OUTBOX_INLINE_WAIT_MAX,
        )
        if not taken:
            due_in = _next_due_in()
            if due_in is None:
                break
            if time.monotonic() + due_in >= deadline:
                if hand_on:
                    _schedule(DRAIN_TASK, due_in)
                break
            time.sleep(max(due_in, DRAIN_IDLE_MIN_SECONDS))
            continue
        done = []
        paused = False
        for item in taken:
            if paused:
                ratelimit.release(item.reservation)
                attempted = _handed_back(0.0)
            else:
                attempted = _attempt(item)
                paused = attempted.pauses_all
            done.append((item.message, attempted))
        with transaction.atomic():
            for message, attempted in done:
                _record(message, attempted)
                outcomes[attempted.status] += 1
    else:
        if hand_on and _next_due_in() is not None:
            queue_task(DRAIN_TASK)
    return dict(outcomes)


def recover_stale(now: datetime | None = None) -> int:
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


def _chat_heads(candidates: QuerySet[OutboundMessage]) -> QuerySet[OutboundMessage]:
    """The ``candidates`` that are their chat's oldest unfinished message."""
    earlier = OutboundMessage.objects.filter(
        chat_id=OuterRef("chat_id"), id__lt=OuterRef("id"), status__in=UNFINISHED
    )
    return candidates.filter(status__in=DUE).exclude(Exists(earlier))


def _take(candidates, *, max_wait: float, limit: int = 1) -> tuple[list[Taken], list[float]]:
    """Mark up to ``limit`` due ``candidates`` as ``sending``, count the attempt, book a slot.

    Only a chat's oldest unfinished message is a candidate, so one batch holds at most one
    message per chat and a chat's messages go out in order. A row whose slot is more than
    ``max_wait`` away is not taken: it stays as it is, due at that slot, and nothing is booked
    for it. Returns the taken rows and the waits of those left. On PostgreSQL the row locks with
    ``skip_locked`` let concurrent workers pass each other; on SQLite the write transaction
    itself serialises them. Either way one message, one sender. Booking the rate-limit slots in
    the same transaction costs one commit for the whole batch.
    """
    taken = []
    deferred = []
    with transaction.atomic():
        now = timezone.now()
        messages = list(
            _chat_heads(candidates)
            .select_for_update(skip_locked=True)
            .filter(next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")[:limit]
        )
        for message in messages:
            reservation = ratelimit.reserve(message.chat_id, max_wait)
            if not reservation.booked:
                OutboundMessage.objects.filter(pk=message.pk).update(
                    next_attempt_at=now + timedelta(seconds=reservation.wait), updated_at=now
                )
                deferred.append(reservation.wait)
                continue
            message.status = Status.SENDING
            message.attempts += 1
            taken.append(Taken(message, reservation, time.monotonic()))
        OutboundMessage.objects.filter(pk__in=[item.message.pk for item in taken]).update(
            status=Status.SENDING, attempts=F("attempts") + 1, updated_at=now
        )
    return taken, deferred


def _next_due_in() -> float | None:
    """Seconds until the next chat's oldest message falls due; ``None`` when nothing waits."""
    earliest = (
        _chat_heads(OutboundMessage.objects.all())
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if earliest is None:
        return None
    return max((earliest - timezone.now()).total_seconds(), 0.0)


def _attempt(item: Taken) -> Attempted:
    """Wait for the booked slot and the limiter's leave, make the call and say what should
    become of the row."""
    message, reservation, booked_at = item
    wait = booked_at + reservation.wait - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    permit = ratelimit.admit(message.chat_id)
    while not permit.granted:
        time.sleep(permit.wait)
        permit = ratelimit.admit(message.chat_id)
    try:
        attempted = _sent(get_client().call(message.method, message.payload))
    except RetryAfter as error:
        attempted = _refused(message, error)
    except PermanentError as error:
        if NOT_MODIFIED in (error.description or ""):
            attempted = _sent(None)
        else:
            attempted = _failed(message, error, dead=True)
    except BotApiError as error:
        attempted = _failed(message, error, dead=message.attempts >= settings.OUTBOX_MAX_ATTEMPTS)
    return attempted._replace(permit=permit, ended_at=time.monotonic())


def _record(message: OutboundMessage, attempted: Attempted) -> None:
    """Write the outcome, unless the sweep gave the row to another worker in the meantime, and
    tell the limiter when the call ended."""
    if attempted.permit is not None:
        ratelimit.finish(attempted.permit, time.monotonic() - attempted.ended_at)
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


def _sent(result: Any) -> Attempted:
    fields = {
        "telegram_message_id": result.get("message_id") if isinstance(result, dict) else None,
        "sent_at": timezone.now(),
        "last_error": "",
        "last_status_code": None,
    }
    return Attempted(Status.SENT, fields)


def _error_text(error: BotApiError) -> str:
    return redact(f"{type(error).__name__}: {error.description}")


def _failed(message: OutboundMessage, error: BotApiError, *, dead: bool) -> Attempted:
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


def _refused(message: OutboundMessage, error: RetryAfter) -> Attempted:
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
    return Attempted(Status.FAILED, fields, retry_in, pauses_all=not error.chat_scoped)


def _handed_back(wait: float) -> Attempted:
    """The row goes back untried, due in ``wait`` seconds (after a 429 that holds every send)."""
    fields = {
        "attempts": F("attempts") - 1,
        "next_attempt_at": timezone.now() + timedelta(seconds=wait),
    }
    return Attempted(Status.QUEUED, fields, wait)


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from the base, capped, with jitter."""
    ceiling = min(
        settings.OUTBOX_BACKOFF_MAX, settings.OUTBOX_BACKOFF_BASE * 2 ** max(attempts - 1, 0)
    )
    return ceiling * random.uniform(0.5, 1.0)


def _schedule_retry(message_id: int, retry_in: float) -> None:
    _schedule(DELIVER_TASK, retry_in, message_id)


def _schedule(task: str, seconds: float, *args: Any) -> None:
    schedule(
        task,
        *args,
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() + timedelta(seconds=seconds),
    )
