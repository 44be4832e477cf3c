"""Inbound updates: stored first, acknowledged, then processed on a worker.

The webhook and the poller both hand raw updates to ``store``. The unique ``update_id`` makes a
redelivered update a no-op, and ``process`` runs the handler for a stored update exactly once,
recording the outcome on the row (processed, ignored, or failed with a redacted error) so that a
handler failure never takes the worker down with it.
"""

import logging
import math
import os
from datetime import timedelta
from functools import lru_cache, partial
from typing import NamedTuple

from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from backoffice.errors import InvalidInput
from backoffice.redaction import redact

from . import handlers
from .models import InboundUpdate

logger = logging.getLogger(__name__)

Status = InboundUpdate.Status

# The update types handlers act on; any other type is stored as ignored and never processed.
HANDLED_TYPES = ("message", "callback_query")
MAX_UPDATE_ID = 2**63 - 1
ERROR_LIMIT = 2000


class Stored(NamedTuple):
    """The stored update, and whether this call stored it (False: it was there already)."""

    update: InboundUpdate
    created: bool


def store(update, *, dispatch=True):
    """Store a raw update once and, if it is a type we handle, queue its processing after commit.

    Raises ``InvalidInput`` for anything that is not an update (not an object, no valid
    ``update_id``). With ``dispatch=False`` the caller processes the update itself.
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
    except RecursionError:
        raise InvalidInput({"update": "is nested too deeply"}) from None
    row, created = InboundUpdate.objects.get_or_create(
        update_id=update_id,
        defaults={
            "payload": payload,
            "status": Status.RECEIVED if handled else Status.IGNORED,
            "processed_at": None if handled else timezone.now(),
        },
    )
    if not created:
        return Stored(row, False)
    if handled and dispatch:
        transaction.on_commit(partial(_dispatch, row.pk))
    return Stored(row, True)


def _dispatch(update_pk):
    # The update is safely stored; if the broker is down, process_stale() picks it up later.
    try:
        async_task("telegram_bridge.tasks.process_update", update_pk, broker=_broker())
    except Exception as error:
        logger.error("Could not queue update #%s for processing: %s", update_pk, redact(error))


def _broker():
    """This process's queue broker. django-q2 builds a new one, and with Redis a new connection,
    for every task unless it is handed one; the webhook queues a task per request."""
    return _broker_for(os.getpid(), Conf.CLUSTER_NAME)


@lru_cache(maxsize=1)
def _broker_for(pid, queue_name):
    return get_broker(queue_name)


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
        try:
            with transaction.atomic():
                row.status = handlers.handle(row.payload)
        except Exception as error:
            row.status = Status.FAILED
            row.error = redact(f"{type(error).__name__}: {error}")[:ERROR_LIMIT]
            logger.error("Update %s failed: %s", row.update_id, row.error)
        row.processed_at = timezone.now()
        row.save(update_fields=["status", "error", "processed_at"])
    return row


def process_stale(older_than=timedelta(minutes=1)):
    """Process updates left waiting ``older_than`` (their task was lost); returns how many."""
    cutoff = timezone.now() - older_than
    waiting = InboundUpdate.objects.filter(status=Status.RECEIVED, received_at__lte=cutoff)
    return sum(process(pk) is not None for pk in waiting.values_list("pk", flat=True))


def _storable(value):
    """``value`` as every database stores it: NUL characters replaced (PostgreSQL's jsonb cannot
    hold them), and no NaN or infinite numbers (they are not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput({"update": "contains a number that is not finite"})
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value
