"""Each alert rule fires once, keeps quiet through its cooldown, repeats after it, resolves."""

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone
from model_bakery import baker

from audit.models import AuditEvent
from claims.models import ApprovalRequest
from monitoring import alerts, heartbeat, tasks
from monitoring.models import AlertState, WorkerHeartbeat
from telegram_bridge import delivery
from telegram_bridge.models import InboundUpdate, OutboundMessage

pytestmark = pytest.mark.django_db

NOTIFY_CHAT = -2002


@pytest.fixture(autouse=True)
def notify_chat(settings):
    """A notify chat, a worker that just beat (so only the rule under test fires), 30 min
    cooldown."""
    settings.TELEGRAM_NOTIFY_CHAT_ID = NOTIFY_CHAT
    settings.ALERT_COOLDOWN_MINUTES = 30
    heartbeat.beat()


def outbox_message(status, **fields):
    fields.setdefault("next_attempt_at", timezone.now())
    return baker.make("telegram_bridge.OutboundMessage", status=status, chat_id=-1001, **fields)


def dead_letter():
    message = outbox_message("dead", attempts=5, failed_at=timezone.now())
    return lambda: OutboundMessage.objects.filter(pk=message.pk).update(status="sent")


def many_retries():
    failed = [
        outbox_message("failed", attempts=5, failed_at=timezone.now() - timedelta(minutes=1))
        for _ in range(2)
    ]
    an_hour_ago = timezone.now() - timedelta(hours=2)
    return lambda: OutboundMessage.objects.filter(pk__in=[m.pk for m in failed]).update(
        failed_at=an_hour_ago
    )


def overdue_approval():
    approval = baker.make(
        "claims.ApprovalRequest",
        kind="command",
        expires_at=timezone.now() + timedelta(days=1),
        next_reminder_at=timezone.now() - timedelta(minutes=5),
    )
    return lambda: ApprovalRequest.objects.filter(pk=approval.pk).update(status="approved")


def failed_update():
    update = baker.make("telegram_bridge.InboundUpdate", update_id=1, status="failed", payload={})
    return lambda: InboundUpdate.objects.filter(pk=update.pk).update(status="processed")


def silent_worker():
    WorkerHeartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=3))
    return heartbeat.beat


CROSSINGS = {
    "dead_letters": dead_letter,
    "outbox_retries": many_retries,
    "overdue_approvals": overdue_approval,
    "failed_updates": failed_update,
    "worker_heartbeat": silent_worker,
}


def check(at):
    return {outcome.rule: outcome for outcome in alerts.check(at)}


def notices():
    return list(
        OutboundMessage.objects.filter(chat_id=NOTIFY_CHAT).values_list("payload__text", flat=True)
    )


def test_every_rule_has_a_crossing_here_and_a_runbook():
    assert set(CROSSINGS) == {rule.name for rule in alerts.RULES}
    runbook = (Path(django_settings.BASE_DIR) / "docs/runbooks/alerts.md").read_text()
    for rule in alerts.RULES:
        path, section = rule.runbook.split("#")
        assert path == "docs/runbooks/alerts.md"
        assert f"\n## {section}\n" in runbook


def test_nothing_fires_while_every_figure_is_below_its_threshold():
    outcomes = check(timezone.now())

    assert {outcome.action for outcome in outcomes.values()} == {alerts.OK}
    assert notices() == []


@pytest.mark.parametrize("rule", CROSSINGS)
def test_a_rule_fires_once_keeps_quiet_and_resolves_when_it_clears(rule):
    clear = CROSSINGS[rule]()
    now = timezone.now()

    fired = check(now)
    quiet = check(now + timedelta(seconds=10))
    clear()
    resolved = check(now + timedelta(seconds=20))
    after = check(now + timedelta(seconds=30))

    assert fired[rule].action == alerts.FIRE
    assert {o.action for name, o in fired.items() if name != rule} == {alerts.OK}
    assert quiet[rule].action == alerts.QUIET
    assert resolved[rule].action == alerts.RESOLVE
    assert after[rule].action == alerts.OK
    [alert, all_clear] = notices()
    assert alert.startswith("🚨 Alert: ")
    assert f"docs/runbooks/alerts.md#{rule.replace('_', '-')}" in alert
    assert all_clear.startswith("✅ Resolved: ")
    events = AuditEvent.objects.filter(object_type="monitoring.alertstate").order_by("id")
    assert [(e.action, e.details["rule"]) for e in events] == [
        ("alert.fired", rule),
        ("alert.resolved", rule),
    ]
    assert events[0].details["outbound_message"] is not None


def test_a_rule_still_firing_after_the_cooldown_sends_again():
    dead_letter()
    now = timezone.now()

    check(now)
    again = check(now + timedelta(minutes=31))

    assert again["dead_letters"].action == alerts.REPEAT
    assert [text.split(":")[0] for text in notices() if "Dead letters" in text] == [
        "🚨 Alert",
        "🚨 Still firing",
    ]


def test_a_flapping_rule_stays_quiet_until_the_cooldown_is_over():
    clear = dead_letter()
    now = timezone.now()
    check(now)
    clear()
    check(now + timedelta(seconds=10))
    dead_letter()

    within = check(now + timedelta(seconds=20))
    later = check(now + timedelta(minutes=31))

    assert within["dead_letters"].action == alerts.QUIET
    assert later["dead_letters"].action == alerts.FIRE
    assert len([text for text in notices() if "Dead letters" in text]) == 3


def test_without_a_notify_chat_the_alert_is_recorded_and_audited_but_not_sent(settings):
    settings.TELEGRAM_NOTIFY_CHAT_ID = None
    failed_update()

    check(timezone.now())

    assert AlertState.objects.get(rule="failed_updates").firing
    event = AuditEvent.objects.get(action="alert.fired")
    assert (event.details["chat_id"], event.details["outbound_message"]) == (None, None)
    assert not OutboundMessage.objects.exists()


def test_alerts_dry_run_shows_what_would_be_sent_and_changes_nothing():
    dead_letter()
    out = StringIO()

    call_command("alerts", "--dry-run", stdout=out)

    report = json.loads(out.getvalue())
    assert report["dry_run"] is True
    [dead] = [rule for rule in report["rules"] if rule["rule"] == "dead_letters"]
    assert (dead["action"], dead["value"], dead["threshold"]) == ("fire", 1, 1)
    assert dead["text"].startswith("🚨 Alert: Dead letters in the outbox\n1 dead letter")
    assert AlertState.objects.count() == 0
    assert notices() == []
    assert not AuditEvent.objects.filter(action__startswith="alert.").exists()


def test_alerts_command_runs_the_check_once():
    dead_letter()

    call_command("alerts", stdout=StringIO())

    assert len(notices()) == 1
    assert AlertState.objects.get(rule="dead_letters").firing


def test_an_alert_reaches_the_notify_chat_through_a_real_delivery(fake_telegram):
    failed_update()
    check(timezone.now())
    [message] = OutboundMessage.objects.filter(chat_id=NOTIFY_CHAT)

    delivery.deliver(message.pk)

    [sent] = fake_telegram.control.sent(chat_id=NOTIFY_CHAT)
    assert sent["payload"]["text"].startswith("🚨 Alert: Failed inbound Telegram updates")
    message.refresh_from_db()
    assert message.status == OutboundMessage.Status.SENT


def test_the_scheduled_check_beats_first_so_a_fresh_deploy_raises_no_worker_alert():
    WorkerHeartbeat.objects.all().delete()

    outcomes = {outcome["rule"]: outcome["action"] for outcome in tasks.check_alerts()}

    assert outcomes["worker_heartbeat"] == alerts.OK
