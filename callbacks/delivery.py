"""POSTing callbacks, on a worker, with the outbox's retry policy.

``deliver`` takes one due row (``queued``/``failed`` → ``sending``, skip-locked, so two workers
never send the same callback), signs it with a fresh timestamp and POSTs it without following
redirects. A 2xx answer marks it ``sent``. A connection error, a timeout, a 5xx, 408, 425 or 429
is retried after the outbox's backoff (``OUTBOX_BACKOFF_BASE``, ``OUTBOX_BACKOFF_MAX``) until
``OUTBOX_MAX_ATTEMPTS``, then it is dead; any other answer (a redirect, a 4xx) is dead at once.
Staff requeue dead ones (``services.requeue``). ``sweep`` sends what a lost task left behind.

Delivery is at least once: the receiver drops a repeat by its ``Idempotency-Key``.
"""

import logging
import time
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import schedule

from telegram_bridge.delivery import backoff

from . import signing
from .models import Callback
from .services import DELIVER_TASK, url_problem

logger = logging.getLogger(__name__)

Status = Callback.Status
DUE = (Status.QUEUED, Status.FAILED)
# Answers that say "later", not "never".
RETRYABLE_CODES = {408, 425, 429}
ERROR_TEXT_LIMIT = 500

_session = requests.Session()


def deliver(callback_id: int) -> None:
    """POST one callback if it is due, and record what came of it; a retry due within
    ``OUTBOX_INLINE_WAIT_MAX`` is made here, a later one is scheduled."""
    deadline = time.monotonic() + settings.OUTBOX_INLINE_WAIT_MAX
    while (callback := _take(Callback.objects.filter(pk=callback_id))) is not None:
        fields = _post(callback)
        _record(callback, fields)
        if fields["status"] != Status.FAILED:
            return
        retry_in = (fields["next_attempt_at"] - timezone.now()).total_seconds()
        if time.monotonic() + retry_in > deadline:
            _schedule_retry(callback.pk, fields["next_attempt_at"])
            return
        time.sleep(max(retry_in, 0.0))


def sweep() -> dict[str, int]:
    """Put back rows a dead worker left ``sending``, then send every due callback, one at a
    time, for up to ``OUTBOX_DRAIN_SECONDS``; returns how many ended in each status."""
    now = timezone.now()
    stale = Callback.objects.filter(
        status=Status.SENDING,
        updated_at__lt=now - timedelta(seconds=settings.OUTBOX_SENDING_LEASE),
    )
    stale.update(
        status=Status.FAILED, last_error="The worker stopped while sending.", next_attempt_at=now
    )
    outcomes: dict[str, int] = {}
    deadline = time.monotonic() + settings.OUTBOX_DRAIN_SECONDS
    while time.monotonic() < deadline:
        callback = _take(Callback.objects.all())
        if callback is None:
            break
        fields = _post(callback)
        _record(callback, fields)
        if fields["status"] == Status.FAILED:
            _schedule_retry(callback.pk, fields["next_attempt_at"])
        outcomes[fields["status"]] = outcomes.get(fields["status"], 0) + 1
    return outcomes


def _take(candidates: QuerySet[Callback]) -> Callback | None:
    with transaction.atomic():
        callback = (
            candidates.select_for_update(skip_locked=True)
            .filter(status__in=DUE, next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at", "id")
            .first()
        )
        if callback is None:
            return None
        callback.status = Status.SENDING
        callback.attempts += 1
        callback.save(update_fields=["status", "attempts", "updated_at"])
    return callback


def _post(callback: Callback) -> dict[str, Any]:
    """Make the call; the fields to write on the row."""
    target = callback.target
    problem = url_problem(target.url)
    if problem:
        # CALLBACK_ALLOWED_HOSTS changed since the request was made.
        return _failed(callback, f"callback_url {problem}", None, permanent=True)
    body = callback.body
    headers = signing.headers(target.signer, int(time.time()), body, callback.idempotency_key)
    try:
        answer = _session.post(
            target.url,
            data=body.encode(),
            headers=headers,
            timeout=settings.CALLBACK_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as error:
        return _failed(callback, f"{type(error).__name__}: {error}", None, permanent=False)
    if 200 <= answer.status_code < 300:
        return {
            "status": Status.SENT,
            "sent_at": timezone.now(),
            "last_error": "",
            "last_status_code": None,
        }
    permanent = answer.status_code < 500 and answer.status_code not in RETRYABLE_CODES
    text = f"HTTP {answer.status_code}: {answer.text[:ERROR_TEXT_LIMIT]}"
    return _failed(callback, text, answer.status_code, permanent=permanent)


def _failed(callback: Callback, error: str, code: int | None, *, permanent: bool) -> dict[str, Any]:
    now = timezone.now()
    fields: dict[str, Any] = {"last_error": error, "last_status_code": code, "failed_at": now}
    if permanent or callback.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        return {**fields, "status": Status.DEAD}
    retry_in = backoff(callback.attempts)
    return {**fields, "status": Status.FAILED, "next_attempt_at": now + timedelta(seconds=retry_in)}


def _record(callback: Callback, fields: dict[str, Any]) -> None:
    """Write the outcome, unless the sweep took the row back meanwhile."""
    Callback.objects.filter(
        pk=callback.pk, status=Status.SENDING, attempts=callback.attempts
    ).update(updated_at=timezone.now(), **fields)
    if fields["status"] == Status.DEAD:
        logger.warning("Callback %s is dead: %s", callback.pk, fields["last_error"])


def _schedule_retry(callback_id: int, when: datetime) -> None:
    schedule(DELIVER_TASK, callback_id, schedule_type=Schedule.ONCE, next_run=when)
