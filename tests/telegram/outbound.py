"""Outbound messages as delivery leaves them, for tests of the dead letters and their requeue."""

from django.utils import timezone
from model_bakery import baker

from telegram_bridge.models import OutboundMessage

Status = OutboundMessage.Status


def outbound_message(status=Status.DEAD, **fields):
    """A message in ``status``; a dead one carries its attempts and Telegram's last answer."""
    dead = status == Status.DEAD
    defaults = {
        "chat_id": 1001,
        "payload": {"chat_id": 1001, "text": "hello"},
        "attempts": 5 if dead else 1,
        "last_error": "TransientError: Internal Server Error" if dead else "",
        "last_status_code": 500 if dead else None,
        "failed_at": timezone.now() if status in (Status.DEAD, Status.FAILED) else None,
        "next_attempt_at": timezone.now(),
    }
    return baker.make(OutboundMessage, **{**defaults, "status": status, **fields})
