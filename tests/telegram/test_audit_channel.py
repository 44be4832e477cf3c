"""Audit checkpoints reach their Telegram channel through the outbox, as the file gets them."""

import json

import pytest
from django.db import transaction

from audit import services
from audit.services import record
from backoffice.actors import system_actor
from telegram_bridge import delivery
from telegram_bridge.models import OutboundMessage

pytestmark = pytest.mark.django_db

AUDIT_CHANNEL = -1009999


def test_checkpoint_is_published_to_the_audit_channel_and_the_file(
    settings, fake_telegram, tmp_path
):
    settings.TELEGRAM_AUDIT_CHANNEL_ID = AUDIT_CHANNEL
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.ndjson")
    record("claim.acquired", actor=system_actor(), object_id="1")

    with transaction.atomic():
        made = services.checkpoint(actor=system_actor())
    message = OutboundMessage.objects.get(chat_id=AUDIT_CHANNEL)
    delivery.deliver(message.pk)

    [sent] = fake_telegram.control.sent(chat_id=AUDIT_CHANNEL, method="sendMessage")
    published = json.loads((tmp_path / "checkpoints.ndjson").read_text())
    assert published == json.loads(services.checkpoint_line(made))
    assert f"sequence {made.seq}" in sent["payload"]["text"]
    assert made.hash in sent["payload"]["text"] and made.signature in sent["payload"]["text"]


def test_nothing_is_queued_while_no_audit_channel_is_set(settings):
    settings.TELEGRAM_AUDIT_CHANNEL_ID = None
    record("claim.acquired", actor=system_actor(), object_id="1")

    services.checkpoint(actor=system_actor())

    assert not OutboundMessage.objects.exists()
