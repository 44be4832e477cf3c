"""Writing the audit trail.

``record`` is called by other apps' services inside their own transaction, so an event exists
exactly when the change it describes was committed. Each event is appended to the hash chain
(``audit/chain.py``); ``checkpoint`` publishes the chain head outside the database.
"""

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from backoffice.actors import Actor
from backoffice.timestamps import iso_utc
from claims.events import publish

from . import chain
from .events import AuditCheckpointed
from .models import AuditEvent, ChainHead, Checkpoint
from .selectors import chain_head, link_values

# One statement takes the next sequence number and the previous hash, and locks the head row
# until the writer's transaction ends: concurrent writers queue there and make one chain.
NEXT_LINK = "UPDATE {table} SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"


def hmac_key() -> bytes:
    return settings.AUDIT_HMAC_KEY.encode()


def record(
    action: str,
    *,
    actor: Actor,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: Any = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event for ``action`` done by ``actor`` on ``obj``."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    event = AuditEvent(
        actor=actor.authenticated_user,
        actor_label=actor.name,
        action=action,
        source=actor.source,
        object_type=object_type,
        object_id=str(object_id),
        trace_id=actor.trace_id,
        details=details or {},
    )
    append(event)
    return event


def append(event: AuditEvent) -> None:
    """Link ``event`` to the end of the hash chain and insert it: its ``seq``, ``prev_hash``,
    ``timestamp`` and ``hash`` are set here."""
    # Hashed as the database will give it back (JSON types only), so a reader recomputes it.
    event.details = json.loads(json.dumps(event.details))
    # Outside a transaction the head's update and the insert still commit together.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        event.seq, event.prev_hash = next_link(cursor)
        event.timestamp = timezone.now()
        event.hash = chain.link_hash(hmac_key(), event.prev_hash, link_values(event.__dict__))
        event.save(force_insert=True)


def next_link(cursor: Any) -> tuple[int, str]:
    """The next sequence number and the hash before it; the head row is locked until commit."""
    statement = NEXT_LINK.format(table=connection.ops.quote_name(ChainHead._meta.db_table))
    cursor.execute(statement)
    row = cursor.fetchone()
    if row is None:
        # The migration makes the row; only an emptied database (a test flush) lacks it.
        ChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": chain.GENESIS})
        cursor.execute(statement)
        row = cursor.fetchone()
    return row[0], row[1]


def checkpoint(*, actor: Actor, force: bool = False) -> Checkpoint | None:
    """Sign the chain head and publish it: a ``Checkpoint`` row, a line in
    ``AUDIT_CHECKPOINT_FILE`` and an ``AuditCheckpointed`` event (the audit channel on Telegram).

    Nothing happens when the chain is empty, or has not grown since the last checkpoint unless
    ``force``. Returns the new checkpoint, if any.
    """
    with transaction.atomic():
        head = chain_head()
        last = Checkpoint.objects.first()
        if head.seq == 0 or (last is not None and last.seq == head.seq and not force):
            return None
        made = Checkpoint(seq=head.seq, hash=head.hash, timestamp=timezone.now())
        made.signature = chain.checkpoint_signature(hmac_key(), checkpoint_values(made))
        made.save()
        if settings.AUDIT_CHECKPOINT_FILE:
            append_line(Path(settings.AUDIT_CHECKPOINT_FILE), checkpoint_line(made))
        publish(AuditCheckpointed(actor=actor, checkpoint=made))
    return made


def checkpoint_values(made: Checkpoint) -> dict[str, Any]:
    return {"seq": made.seq, "hash": made.hash, "timestamp": iso_utc(made.timestamp)}


def checkpoint_line(made: Checkpoint) -> str:
    """The published form of a checkpoint, the same in the file and on Telegram."""
    return json.dumps({**checkpoint_values(made), "signature": made.signature}, sort_keys=True)


def append_line(path: Path, line: str) -> None:
    """Add ``line`` to the end of ``path`` and make it durable before the checkpoint commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, (line + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
