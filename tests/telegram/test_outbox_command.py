"""``manage.py outbox``: listing, requeueing by id or all dead, the automatic requeue."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.errors import InvalidTransition, NotFound, NotPermitted
from telegram_bridge.models import OutboundMessage
from tests.telegram.outbound import outbound_message
from tests.telegram.worker import database_url

Status = OutboundMessage.Status


def outbox(*args):
    out = StringIO()
    call_command("outbox", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def operator(db):
    user = baker.make("auth.User", username="operator")
    user.user_permissions.add(Permission.objects.get(codename="requeue_outboundmessage"))
    return user


@pytest.mark.django_db
def test_list_filters_by_status_and_speaks_json():
    dead = outbound_message(Status.DEAD)
    outbound_message(Status.SENT)

    listed = json.loads(outbox("list", "--status", "dead", "--json"))
    text = outbox("list")

    assert [row["id"] for row in listed] == [dead.pk]
    assert listed[0]["last_error"] == "TransientError: Internal Server Error"
    assert "payload" not in listed[0]
    assert f"#{dead.pk}" in text
    assert "sent" in text


@pytest.mark.django_db
def test_requeue_one_message_by_id(operator):
    dead = outbound_message(Status.DEAD)

    output = outbox("requeue", str(dead.pk), "--user", "operator")

    assert output.strip() == f"#{dead.pk} requeued"
    assert OutboundMessage.objects.get(pk=dead.pk).status == Status.QUEUED
    assert AuditEvent.objects.get(action="telegram.requeued").source == "cli"


@pytest.mark.django_db
def test_requeue_all_dead(operator):
    dead = [outbound_message(Status.DEAD) for _ in range(3)]
    outbound_message(Status.SENT)

    output = outbox("requeue", "--all-dead", "--user", "operator")

    assert output.strip() == "3 requeued"
    assert set(
        OutboundMessage.objects.filter(status=Status.QUEUED).values_list("pk", flat=True)
    ) == {m.pk for m in dead}


@pytest.mark.django_db
def test_requeue_errors_propagate_in_process(operator):
    sent = outbound_message(Status.SENT)
    baker.make("auth.User", username="nobody")

    with pytest.raises(InvalidTransition):
        outbox("requeue", str(sent.pk), "--user", "operator")
    with pytest.raises(NotFound):
        outbox("requeue", "424242", "--user", "operator")
    with pytest.raises(NotPermitted):
        outbox("requeue", "--all-dead", "--user", "nobody")


@pytest.mark.django_db
def test_auto_requeue_dry_run_changes_nothing(settings):
    settings.OUTBOX_REQUEUE_BATCH = 10
    dead = outbound_message(Status.DEAD)

    preview = outbox("auto-requeue", "--dry-run")
    assert preview.startswith("1 would be requeued")
    assert f"#{dead.pk}" in preview
    assert OutboundMessage.objects.get(pk=dead.pk).status == Status.DEAD

    assert outbox("auto-requeue").startswith("1 requeued")
    assert OutboundMessage.objects.get(pk=dead.pk).status == Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_command_line_maps_errors_to_exit_codes(operator):
    sent = outbound_message(Status.SENT)
    dead = outbound_message(Status.DEAD)

    def run(*args):
        env = {"DATABASE_URL": database_url(), "VAR_DIR": str(settings.VAR_DIR)}
        return subprocess.run(
            [sys.executable, "manage.py", "outbox", *args],
            capture_output=True,
            text=True,
            cwd=settings.BASE_DIR,
            env={**os.environ, **env},
            timeout=60,
        )

    not_found = run("requeue", "424242", "--user", "operator")
    conflict = run("requeue", str(sent.pk), "--user", "operator")
    unknown_user = run("requeue", str(dead.pk), "--user", "ghost")
    ok = run("requeue", str(dead.pk), "--user", "operator")

    assert not_found.returncode == 5
    assert json.loads(not_found.stderr)["error"] == "not_found"
    assert conflict.returncode == 3
    assert "is sent" in json.loads(conflict.stderr)["detail"]
    assert unknown_user.returncode == 2
    assert ok.returncode == 0
    assert ok.stdout.strip() == f"#{dead.pk} requeued"
