"""Writing the audit trail.

``record`` is called by other apps' services inside their own transaction, so an event exists
exactly when the change it describes was committed. ``append`` links each event into the hash
chain (``audit/chain.py``); ``checkpoint`` publishes the chain head outside the database.
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
# until the writer's transaction ends: concurrent writers queue there and make one chain. The
# table is named as in the triggers of migration 0002; it needs no quoting on any database.
NEXT_LINK = "UPDATE audit_chainhead SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"


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
    ``timestamp`` and ``hash`` are set here.

    What the chain adds to an audited change (``bench/audit_chain.py`` measures it) is, about half
    each, the head's ``UPDATE … RETURNING`` (one round trip to the database, and the trigger that
    moves the head's hash on insert) and the work on the event's fields: the JSON round trip of
    ``details``, the canonical JSON and the HMAC. The rest (the savepoint-free atomic block, the
    cursor, the dict of fields) costs microseconds. The UPDATE cannot ride with the insert: the
    hash needs the previous hash, and the key never goes to the database. The JSON round trip
    cannot be folded into the canonical encoding: integer keys sort differently once they are
    strings, and the hash must match the row as a reader gets it back.

    The head row stays locked from that UPDATE until the caller's transaction ends, so concurrent
    audited changes queue for the rest of the caller's work and its commit. Locking it later would
    mean linking the event just before COMMIT, which Django has no hook for (``on_commit`` runs
    after it, too late for an event that must commit with its change); a caller shortens the queue
    by recording its event last.
    """
    # Hashed as the database will give it back (JSON types only: tuples come back as lists, keys
    # as strings), so a reader recomputes it from the row.
    event.details = json.loads(json.dumps(event.details))
    # Outside a transaction the head's update and the insert still commit together; inside the
    # caller's, a failure between the two keeps it from committing one without the other.
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            event.seq, event.prev_hash = next_link(cursor)
        # Stamped under the head's lock, so that times never go back along the chain.
        event.timestamp = timezone.now()
        event.hash = chain.link_hash(hmac_key(), event.prev_hash, link_values(event.__dict__))
        event.save(force_insert=True)


def next_link(cursor: Any) -> tuple[int, str]:
    """The next sequence number and the hash before it; the head row is locked until commit."""
    cursor.execute(NEXT_LINK)
    row = cursor.fetchone()
    if row is None:
        # The migration makes the row; only an emptied database (a test flush) lacks it.
        ChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": chain.GENESIS})
        cursor.execute(NEXT_LINK)
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
