"""Publishing the audit trail's checkpoints to a Telegram channel of their own.

A checkpoint posted where the database's writers cannot delete it is evidence that the chain up
to it existed then (docs/audit.md). The subscriber of ``audit.events.AuditCheckpointed``
(registered in ``apps.py``) queues the message in the checkpoint's transaction, so it goes out
exactly when the checkpoint commits; nothing is posted while ``TELEGRAM_AUDIT_CHANNEL_ID`` is
unset. The message ends with the checkpoint's JSON line, the same as in ``AUDIT_CHECKPOINT_FILE``,
so it can be copied into a file that ``manage.py audit_verify --checkpoints`` reads.
"""

from html import escape

from django.conf import settings

from audit.events import AuditCheckpointed
from audit.services import checkpoint_line

from . import outbox


def checkpoint_published(event: AuditCheckpointed) -> None:
    chat_id = settings.TELEGRAM_AUDIT_CHANNEL_ID
    if not chat_id:
        return
    made = event.checkpoint
    text = f"🔏 Audit checkpoint: sequence {made.seq}\n<code>{escape(checkpoint_line(made))}</code>"
    outbox.enqueue(
        method="sendMessage",
        chat_id=chat_id,
        payload={"text": text, "parse_mode": "HTML"},
        dedupe_key=f"audit:checkpoint:{made.pk}",
    )
