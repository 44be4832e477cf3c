"""What a real worker process does shows in this (the web) process's /metrics and /readyz:
the figures live in the database, not in any one process's memory."""

import pytest
from django.db import transaction
from django_q.tasks import async_task

from telegram_bridge import outbox
from telegram_bridge.models import OutboundMessage
from tests.telegram.worker import wait_for

from .scrape import scrape, value


@pytest.mark.django_db(transaction=True)
def test_a_delivery_and_a_heartbeat_by_a_worker_show_in_the_web_process(
    client, qcluster, fake_telegram
):
    before = scrape(client)
    assert value(before, "claimdesk_outbox_sent_total") == 0
    assert client.get("/readyz").status_code == 503
    qcluster.start()

    with transaction.atomic():
        outbox.enqueue(
            method="sendMessage", chat_id=-1001, payload={"text": "hello"}, dedupe_key="e2e"
        )
    async_task("monitoring.tasks.beat")
    wait_for(
        lambda: OutboundMessage.objects.filter(status="sent").exists(),
        timeout=60,
        message=f"the worker to deliver\n{qcluster.output()}",
    )
    wait_for(
        lambda: client.get("/readyz").status_code == 200,
        timeout=60,
        message=f"the worker's heartbeat\n{qcluster.output()}",
    )

    after = scrape(client)
    assert value(after, "claimdesk_outbox_sent_total") == 1
    assert value(after, "claimdesk_outbox_queue_depth") == 0
    assert value(after, "claimdesk_worker_heartbeat_age_seconds") < 60
    assert len(fake_telegram.control.sent(chat_id=-1001)) == 1
