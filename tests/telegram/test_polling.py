import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from claims import services
from claims.models import ApprovalRequest
from telegram_bridge import inbound, polling
from telegram_bridge.client import get_client
from telegram_bridge.models import InboundUpdate, PollerLease
from telegram_bridge.polling import LEASE_NAME, Poller

from .updates import ALICE, APPROVER_CHAT
from .worker import MANAGE_PY, wait_for, worker_env


@pytest.fixture
def telegram(settings, fake_telegram_unthrottled):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    return fake_telegram_unthrottled


def send_texts(telegram, *texts):
    return [telegram.control.send_text(APPROVER_CHAT, ALICE, text)["update_id"] for text in texts]


def stored_ids():
    return sorted(InboundUpdate.objects.values_list("update_id", flat=True))


@pytest.mark.django_db
def test_updates_are_stored_and_then_confirmed(telegram):
    ids = send_texts(telegram, "/status", "/help")
    poller = Poller(timeout=0)

    assert poller.poll_once() == 2
    assert stored_ids() == ids
    assert poller.offset == ids[-1] + 1
    assert poller.poll_once() == 0
    assert telegram.control.pending_updates() == []


@pytest.mark.django_db
def test_crash_between_storing_and_confirming_loses_nothing(telegram, monkeypatch):
    ids = send_texts(telegram, "/status", "/help", "/status")
    real_store = inbound.store
    calls = []

    def store_then_crash(update, **kwargs):
        calls.append(update["update_id"])
        if len(calls) == 2:
            raise KeyboardInterrupt("the poller dies here")
        return real_store(update, **kwargs)

    monkeypatch.setattr(inbound, "store", store_then_crash)
    with pytest.raises(KeyboardInterrupt):
        Poller(timeout=0).poll_once()
    monkeypatch.setattr(inbound, "store", real_store)
    assert stored_ids() == ids[:1]

    restarted = Poller(timeout=0)
    restarted.poll_once()

    assert stored_ids() == ids
    assert restarted.stored == 2


@pytest.mark.django_db
def test_poll_with_process_decides_a_button_press(telegram, approver_account, agent_actor):
    approval = services.request_approval(
        kind="claim", text="Take story 4", agent_id="agent", actor=agent_actor
    )
    telegram.control.press_button(APPROVER_CHAT, 1, ALICE, f"approve:{approval.pk.hex}")

    call_command("telegram_poll", "--once", "--process", "--timeout", "0")

    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED
    assert InboundUpdate.objects.get().status == InboundUpdate.Status.PROCESSED


@pytest.mark.django_db
def test_second_poller_is_refused_while_the_first_holds_the_lease(telegram):
    polling.acquire_lease("elsewhere:42", seconds=60)

    with pytest.raises(CommandError, match=r"Another poller \(elsewhere:42\) is running") as exc:
        call_command("telegram_poll", "--once", "--timeout", "0")

    assert exc.value.returncode == 3
    assert PollerLease.objects.get().holder == "elsewhere:42"


@pytest.mark.django_db
def test_lease_of_a_crashed_poller_runs_out(telegram):
    polling.acquire_lease("crashed:1", seconds=60)
    PollerLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    send_texts(telegram, "/help")

    call_command("telegram_poll", "--once", "--timeout", "0")

    assert InboundUpdate.objects.count() == 1
    assert not PollerLease.objects.exists()


@pytest.mark.django_db
def test_poller_refuses_to_run_while_a_webhook_is_set(telegram):
    get_client().call("setWebhook", {"url": "http://127.0.0.1:9/telegram/webhook/"})

    with pytest.raises(CommandError, match="409 Conflict: a webhook is set") as exc:
        call_command("telegram_poll", "--once", "--timeout", "0")

    assert exc.value.returncode == 4


@pytest.mark.django_db
def test_wrong_token_stops_the_poller_with_a_clear_message(telegram, settings):
    settings.TELEGRAM_BOT_TOKEN = "123456789:wrong-token-for-this-fake-server-xx"

    with pytest.raises(CommandError, match="Telegram refused getUpdates: Unauthorized") as exc:
        call_command("telegram_poll", "--once", "--timeout", "0")

    assert exc.value.returncode == 4
    assert settings.TELEGRAM_BOT_TOKEN not in str(exc.value)


@pytest.mark.django_db
def test_transient_failure_is_retried(telegram, settings, monkeypatch):
    settings.TELEGRAM_RETRY_TOTAL = 0
    monkeypatch.setattr(polling, "RETRY_WAIT_FIRST", 0.01)
    telegram.control.inject("getUpdates", 502)
    send_texts(telegram, "/help")

    Poller(timeout=0).run(once=True)

    assert InboundUpdate.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_the_poller_cleanly(telegram, tmp_path):
    env = worker_env(base_url=telegram.base_url, token=telegram.token)
    log = (tmp_path / "poller.log").open("wb")
    poller = subprocess.Popen(
        [sys.executable, str(MANAGE_PY), "telegram_poll", "--timeout", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: PollerLease.objects.filter(name=LEASE_NAME).exists() or poller.poll(),
            message="the poller to take its lease",
        )
        send_texts(telegram, "/help")
        wait_for(InboundUpdate.objects.exists, message="the poller to store the update")

        poller.send_signal(signal.SIGTERM)
        returncode = poller.wait(timeout=30)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
        log.close()

    output = (tmp_path / "poller.log").read_text()
    assert returncode == 0, output
    assert "Stopped; stored 1 new updates." in output
    assert not PollerLease.objects.exists()
