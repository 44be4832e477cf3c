"""The transactional outbox: Bot API calls written with the change that causes them.

``enqueue`` runs inside the caller's transaction, so a message exists exactly when the change that
caused it was committed; after commit the message is handed to a django-q2 worker, which delivers
it (``delivery``). Failed and dead messages are given another round in ``dead_letters``.

Every query on ``OutboundMessage`` goes through these three modules; the lookups other code needs
(a message by its dedupe key, the list staff read) are here.
"""

import logging
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Case, Count, F, IntegerField, Min, QuerySet, Sum, When
from django.utils import timezone

from backoffice import queues
from backoffice.errors import InvalidInput, NotFound
from backoffice.inserts import insert_once
from backoffice.limits import max_length

from . import fitting
from .models import OutboundMessage

logger = logging.getLogger(__name__)

DELIVER_TASK = "telegram_bridge.tasks.deliver"

DEDUPE_KEY_LIMIT = max_length(OutboundMessage, "dedupe_key")

# Bot API methods that address a callback query or an inline message rather than a chat.
METHODS_WITHOUT_CHAT = frozenset({"answerCallbackQuery"})


def enqueue(
    *, method: str, chat_id: int, payload: dict[str, Any], dedupe_key: str
) -> OutboundMessage:
    """Queue one Bot API call; call it inside the transaction of the change that causes it.

    ``payload`` holds the Bot API parameters; ``chat_id`` is added to it for methods that take one.
    The same ``dedupe_key`` again returns the existing row, so one domain event never sends two
    messages. A ``text`` longer than Telegram takes for the method is cut to fit, so no message
    becomes a dead letter for its length. The worker hears of the message only after commit: a
    rolled-back change leaves neither a row nor a task.
    """
    fields: dict[str, str] = {}
    if not isinstance(method, str) or not method.strip():
        fields["method"] = "must be a Bot API method name"
    if isinstance(chat_id, bool) or not isinstance(chat_id, int):
        fields["chat_id"] = "must be an integer chat id"
    if not isinstance(payload, dict):
        fields["payload"] = "must be a dict of Bot API parameters"
    if not isinstance(dedupe_key, str) or not dedupe_key.strip():
        fields["dedupe_key"] = "must not be empty"
    elif len(dedupe_key) > DEDUPE_KEY_LIMIT:
        fields["dedupe_key"] = "is too long"
    if fields:
        raise InvalidInput(fields)

    if method not in METHODS_WITHOUT_CHAT:
        payload = {"chat_id": chat_id, **payload}
    payload = _fitted(method, payload)
    message = OutboundMessage(
        method=method,
        chat_id=chat_id,
        payload=payload,
        dedupe_key=dedupe_key,
        next_attempt_at=timezone.now(),
    )
    if not insert_once(message, unique_field="dedupe_key"):
        return OutboundMessage.objects.get(dedupe_key=dedupe_key)
    transaction.on_commit(partial(hand_to_worker, message.pk))
    return message


def find(dedupe_key: str, *, lock: bool = False) -> OutboundMessage | None:
    """The message queued under ``dedupe_key``, if any; ``lock`` holds its row until commit."""
    messages = OutboundMessage.objects.select_for_update() if lock else OutboundMessage.objects
    try:
        # The key is unique: no ORDER BY to build and run, as first() would.
        return messages.get(dedupe_key=dedupe_key)
    except OutboundMessage.DoesNotExist:
        return None


def exists(dedupe_key: str) -> bool:
    """Whether a message was ever queued under ``dedupe_key``."""
    return OutboundMessage.objects.filter(dedupe_key=dedupe_key).exists()


def rewrite(message: OutboundMessage, parameters: dict[str, Any]) -> None:
    """Replace the parameters of a message not sent yet, so it goes out as it now should."""
    message.payload = _fitted(message.method, {"chat_id": message.chat_id, **parameters})
    message.save(update_fields=["payload", "updated_at"])


def hand_to_worker(message_id: int) -> None:
    """Put a delivery task on the queue; if the broker is unreachable the sweep delivers later."""
    queue_task(DELIVER_TASK, message_id)


def queue_task(task: str, *args: Any) -> None:
    """Queue ``task``; if the broker is unreachable the sweep delivers later.

    A successful delivery is recorded on the message itself, so django-q2 keeps only failures.
    """
    try:
        queues.queue(task, *args, save=False)
    except Exception:
        # The rows are committed and due, so nothing is lost: the sweep picks them up.
        logger.warning("Could not queue %s%s; the sweep will send it.", task, args, exc_info=True)


def _fitted(method: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with a ``text`` longer than Telegram takes for ``method`` cut to fit
    (``fitting.fit``), so no message becomes a dead letter for its length."""
    if method in fitting.TEXT_LIMITS and isinstance(payload.get("text"), str):
        html = payload.get("parse_mode") == "HTML"
        return {
            **payload,
            "text": fitting.fit(payload["text"], fitting.TEXT_LIMITS[method], html=html),
        }
    return payload


# --- Lookups --------------------------------------------------------------------------------


def messages() -> QuerySet[OutboundMessage]:
    """Every message, for the lists staff read (admin, API, ``manage.py outbox``)."""
    return OutboundMessage.objects.all()


def get(message_id: object, *, lock: bool = False) -> OutboundMessage:
    """The message with ``message_id``; ``lock`` holds its row until the transaction ends."""
    found = OutboundMessage.objects.select_for_update() if lock else OutboundMessage.objects
    try:
        return found.get(pk=int(message_id))  # type: ignore[call-overload]
    except (OutboundMessage.DoesNotExist, TypeError, ValueError, OverflowError):
        raise NotFound(f"No outbound message with id {message_id}.") from None


def status_counts() -> dict[str, int]:
    """How many messages are in each status (every status, zero included)."""
    counts = dict.fromkeys(OutboundMessage.Status.values, 0)
    for row in OutboundMessage.objects.values("status").annotate(n=Count("*")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def backlog(now: datetime) -> tuple[int, datetime | None]:
    """How many messages are due now (queued or failed, their time come), and since when the
    longest-waiting of them has been due."""
    due = OutboundMessage.objects.filter(
        status__in=(OutboundMessage.Status.QUEUED, OutboundMessage.Status.FAILED),
        next_attempt_at__lte=now,
    )
    found = due.aggregate(n=Count("*"), oldest=Min("next_attempt_at"))
    return found["n"], found["oldest"]


def failed_attempts(since: datetime | None = None) -> int:
    """Delivery attempts that failed, as the rows tell: every attempt of a message still being
    retried or dead, all but the last of one sent. ``since`` keeps the messages whose latest
    failure came after it. A requeue starts a message's attempts afresh, so this is a gauge."""
    rows = OutboundMessage.objects.filter(attempts__gt=0, failed_at__isnull=False)
    if since is not None:
        rows = rows.filter(failed_at__gte=since)
    finished = (OutboundMessage.Status.SENT, OutboundMessage.Status.SENDING)
    failed = Case(
        When(status__in=finished, then=F("attempts") - 1),
        default=F("attempts"),
        output_field=IntegerField(),
    )
    return rows.aggregate(n=Sum(failed))["n"] or 0
