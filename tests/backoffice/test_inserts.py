"""``insert_once``: one statement that inserts a row or, if its unique key is taken, nothing."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backoffice.inserts import insert_once
from telegram_bridge.models import OutboundMessage


def message(key: str, text: str = "hello") -> OutboundMessage:
    return OutboundMessage(
        method="sendMessage",
        chat_id=1,
        payload={"chat_id": 1, "text": text},
        dedupe_key=key,
        next_attempt_at=timezone.now(),
    )


@pytest.mark.django_db
def test_a_new_key_is_inserted_in_one_statement_and_the_instance_is_saved():
    new = message("insert-once")
    with CaptureQueriesContext(connection) as captured:
        assert insert_once(new, unique_field="dedupe_key") is True
    assert len(captured.captured_queries) == 1
    assert new.pk is not None and not new._state.adding
    stored = OutboundMessage.objects.get(pk=new.pk)
    assert (stored.dedupe_key, stored.payload, stored.status) == (
        "insert-once",
        {"chat_id": 1, "text": "hello"},
        OutboundMessage.Status.QUEUED,
    )
    assert stored.created_at is not None


@pytest.mark.django_db
def test_a_taken_key_inserts_nothing_and_leaves_the_transaction_usable():
    first = message("taken")
    assert insert_once(first, unique_field="dedupe_key")
    with transaction.atomic():
        again = message("taken", text="second")
        assert insert_once(again, unique_field="dedupe_key") is False
        assert again.pk is None and again._state.adding
        # No error was raised, so the transaction goes on without a savepoint to roll back to.
        assert OutboundMessage.objects.get(dedupe_key="taken").payload["text"] == "hello"
    assert OutboundMessage.objects.filter(dedupe_key="taken").count() == 1
