"""Inbound updates: stored first, acknowledged, then processed on a worker.

The webhook and the poller both hand raw updates to ``store``. The unique ``update_id`` makes a
redelivered update a no-op, and ``process`` runs the handler for a stored update exactly once,
recording the outcome on the row (processed, ignored, or failed with a redacted error) so that a
handler failure never takes the worker down with it.

One bad update never blocks the others: an update whose fields the bridge uses have the wrong
type or size, or that the database refuses (text that is not valid Unicode), is quarantined,
stored as failed with the reason and with what could be kept, and acknowledged like any other;
Telegram would otherwise send it again forever and the poller could not move past it. Staff see
failed updates in the admin and may ``retry`` one once its cause is fixed.
"""

import logging
import math
import re
from datetime import timedelta
from functools import partial
from typing import NamedTuple

from django.db import DatabaseError, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from audit.services import record
from backoffice import queues
from backoffice.actors import Actor
from backoffice.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted
from backoffice.redaction import redact

from . import handlers
from .models import InboundUpdate

logger = logging.getLogger(__name__)

Status = InboundUpdate.Status

# The update types handlers act on; any other type is stored as ignored and never processed.
HANDLED_TYPES = ("message", "callback_query")
# NUL and lone surrogates (json.loads joins a valid pair into one character): no database keeps
# them in text.
NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_UPDATE_ID = 2**63 - 1
ERROR_LIMIT = 2000
RETRY_PERMISSION = "telegram_bridge.retry_inboundupdate"

# The fields handlers read, each with its type and longest value (Telegram's own limits: 4096
# characters of text, 64 bytes of button data; ids are short opaque strings or 64-bit numbers).
TEXT_LIMIT = 4096
SHORT_LIMIT = 256
FIELDS = {
    ("message", "text"): (str, TEXT_LIMIT),
    ("message", "message_id"): (int, None),
    ("message", "chat", "id"): (int, None),
    ("message", "from", "id"): (int, None),
    ("message", "from", "username"): (str, SHORT_LIMIT),
    ("callback_query", "id"): (str, SHORT_LIMIT),
    ("callback_query", "data"): (str, SHORT_LIMIT),
    ("callback_query", "from", "id"): (int, None),
    ("callback_query", "from", "username"): (str, SHORT_LIMIT),
    ("callback_query", "message", "message_id"): (int, None),
    ("callback_query", "message", "chat", "id"): (int, None),
}


class Stored(NamedTuple):
    """The stored update, and whether this call stored it (False: it was there already)."""

    update: InboundUpdate
    created: bool


def store(update, *, dispatch=True):
    """Store a raw update once and, if it is a type we handle, queue its processing after commit.

    Raises ``InvalidInput`` for anything that is not an update (not an object, no valid
    ``update_id``). An update that is one but cannot be handled or stored as it came is stored
    as failed instead (quarantined, see the module docstring). With ``dispatch=False`` the caller
    processes the update itself.
    """
    if not isinstance(update, dict):
        raise InvalidInput({"update": "must be a JSON object"})
    update_id = update.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise InvalidInput({"update_id": "must be a whole number"})
    if not 0 <= update_id <= MAX_UPDATE_ID:
        raise InvalidInput({"update_id": f"must be between 0 and {MAX_UPDATE_ID}"})
    handled = any(isinstance(update.get(kind), dict) for kind in HANDLED_TYPES)
    try:
        payload = _storable(update)
        problem = problems(update) if handled else ""
    except RecursionError:
        raise InvalidInput({"update": "is nested too deeply"}) from None
    if problem:
        stored = _insert(update_id, payload, Status.FAILED, problem)
    else:
        try:
            stored = _insert(update_id, payload, Status.RECEIVED if handled else Status.IGNORED)
        except DatabaseError as error:
            # Whatever else the database refuses to keep: keep the id and the reason.
            reason = redact(f"The database refused the update: {type(error).__name__}: {error}")
            stored = _insert(update_id, {"update_id": update_id}, Status.FAILED, reason)
    if dispatch and stored.created and stored.update.status == Status.RECEIVED:
        transaction.on_commit(partial(_dispatch, stored.update.pk))
    return stored


def _insert(update_id, payload, status, error=""):
    """Create the row once; an ``update_id`` already stored returns the existing row."""
    settled = status != Status.RECEIVED
    row, created = InboundUpdate.objects.get_or_create(
        update_id=update_id,
        defaults={
            "payload": payload,
            "status": status,
            "error": error[:ERROR_LIMIT],
            "processed_at": timezone.now() if settled else None,
        },
    )
    if created and status == Status.FAILED:
        logger.warning("Quarantined update %s: %s", update_id, error)
    if not created:
        InboundUpdate.objects.filter(pk=row.pk).update(duplicates=F("duplicates") + 1)
    return Stored(row, created)


def problems(update) -> str:
    """Why the fields handlers read cannot be handled as they are ("" when they can)."""
    found = []
    for path, (kind, limit) in FIELDS.items():
        value = update
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            continue
        name = ".".join(path)
        if isinstance(value, bool) or not isinstance(value, kind):
            found.append(f"{name} must be {'a string' if kind is str else 'a whole number'}")
        elif isinstance(value, int) and not -MAX_UPDATE_ID - 1 <= value <= MAX_UPDATE_ID:
            found.append(f"{name} is out of range")
        elif isinstance(value, str) and limit is not None and len(value) > limit:
            found.append(f"{name} is longer than {limit} characters")
        elif kind is str and not _is_unicode(value):
            found.append(f"{name} is not valid Unicode text")
    return "; ".join(found)


def _is_unicode(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dispatch(update_pk):
    # The update is safely stored; if the broker is down, process_stale() picks it up later.
    try:
        queues.queue("telegram_bridge.tasks.process_update", update_pk)
    except Exception as error:
        logger.error("Could not queue update #%s for processing: %s", update_pk, redact(error))


def process(update_pk):
    """Run the handler for a stored, unprocessed update; returns the row (None: done before)."""
    with transaction.atomic():
        row = (
            InboundUpdate.objects.select_for_update()
            .filter(pk=update_pk, status=Status.RECEIVED)
            .first()
        )
        if row is None:
            return None
        problem = problems(row.payload)
        try:
            if problem:
                raise InvalidInput({"update": problem})
            with transaction.atomic():
                row.status = handlers.handle(row.payload)
        except Exception as error:
            row.status = Status.FAILED
            row.error = redact(f"{type(error).__name__}: {error}")[:ERROR_LIMIT]
            logger.error("Update %s failed: %s", row.update_id, row.error)
        row.processed_at = timezone.now()
        row.save(update_fields=["status", "error", "processed_at"])
    return row


def retry(update_pk, *, actor: Actor) -> InboundUpdate:
    """Process a failed update again (its cause fixed); audited as ``telegram.update_retried``.

    Returns the row with the new outcome; an update that still cannot be handled fails again
    with the reason.
    """
    if not actor.has_perm(RETRY_PERMISSION):
        raise NotPermitted(f"{actor.name} may not retry inbound updates.")
    with transaction.atomic():
        try:
            row = InboundUpdate.objects.select_for_update().get(pk=int(update_pk))
        except (InboundUpdate.DoesNotExist, TypeError, ValueError, OverflowError):
            raise NotFound(f"No inbound update with id {update_pk}.") from None
        if row.status != Status.FAILED:
            raise InvalidTransition(
                f"Update {row.update_id} is {row.status}; only failed updates can be retried.",
                status=row.status,
            )
        record(
            "telegram.update_retried",
            actor=actor,
            obj=row,
            details={"update_id": row.update_id, "previous_error": row.error},
        )
        row.status = Status.RECEIVED
        row.error = ""
        row.processed_at = None
        row.save(update_fields=["status", "error", "processed_at"])
    return process(row.pk) or row


def process_stale(older_than=timedelta(minutes=1)):
    """Process updates left waiting ``older_than`` (their task was lost); returns how many."""
    cutoff = timezone.now() - older_than
    waiting = InboundUpdate.objects.filter(status=Status.RECEIVED, received_at__lte=cutoff)
    return sum(process(pk) is not None for pk in waiting.values_list("pk", flat=True))


def _storable(value):
    """``value`` as every database stores it: NUL characters and lone surrogates replaced
    (PostgreSQL's jsonb cannot hold them), and no NaN or infinite numbers (they are not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput({"update": "contains a number that is not finite"})
    if isinstance(value, str):
        return NOT_STORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def status_counts() -> dict[str, int]:
    """How many stored updates are in each status (every status, zero included)."""
    counts = dict.fromkeys(Status.values, 0)
    for row in InboundUpdate.objects.values("status").annotate(n=Count("*")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def duplicate_count() -> int:
    """How many deliveries of an update already stored were turned away, in all."""
    return InboundUpdate.objects.aggregate(n=Sum("duplicates"))["n"] or 0
