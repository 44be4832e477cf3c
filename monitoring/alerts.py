"""Alert rules, checked on a schedule, sent to the notify chat through the outbox.

Each rule measures one figure and fires when it reaches its threshold (settings ``ALERT_*`` and
``WORKER_HEARTBEAT_MAX_AGE``). ``check`` runs every rule once: a rule that starts firing sends one
alert to ``TELEGRAM_NOTIFY_CHAT_ID``, a rule still firing after ``ALERT_COOLDOWN_MINUTES`` sends
it again, a rule that clears sends "resolved"; a rule that fires again within the cooldown after
it cleared stays quiet until the cooldown is over, so a flapping figure cannot become a storm.
Each message is queued in the transaction that records the rule's new state and its audit event
(``alert.fired``, ``alert.resolved``), under the lock of the rule's ``AlertState`` row, so workers
running the check at once send it once.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record
from backoffice.actors import system_actor
from telegram_bridge import inbound, outbox
from telegram_bridge.models import InboundUpdate, OutboundMessage

from . import heartbeat, selectors
from .models import AlertState

FIRE = "fire"
REPEAT = "repeat"
RESOLVE = "resolve"
# Crossing, but the rule fired less than a cooldown ago: nothing is sent.
QUIET = "quiet"
OK = "ok"
SENDS = (FIRE, REPEAT, RESOLVE)


@dataclass(frozen=True)
class Rule:
    """One alert rule: what it measures, from which setting its threshold comes, how it reads."""

    name: str
    title: str
    threshold_setting: str
    measure: Callable[[datetime], float | None]
    describe: Callable[[float | None], str]

    @property
    def threshold(self) -> float:
        return float(getattr(settings, self.threshold_setting))

    @property
    def runbook(self) -> str:
        """Its section of the alerts runbook (each heading is the rule's name, hyphenated)."""
        return f"docs/runbooks/alerts.md#{self.name.replace('_', '-')}"

    def crossed(self, value: float | None) -> bool:
        """``None`` is "never measured" (no heartbeat ever): as bad as it gets."""
        return value is None or value >= self.threshold


def _dead_letters(now: datetime) -> float:
    return outbox.status_counts()[OutboundMessage.Status.DEAD]


def _retries(now: datetime) -> float:
    return outbox.failed_attempts(since=now - timedelta(hours=1))


def _failed_updates(now: datetime) -> float:
    return inbound.status_counts()[InboundUpdate.Status.FAILED]


def _count(singular: str, plural: str) -> Callable[[float | None], str]:
    def describe(value: float | None) -> str:
        number = int(value or 0)
        return f"{number} {singular if number == 1 else plural}"

    return describe


def _heartbeat(value: float | None) -> str:
    if value is None:
        return "No worker has ever written a heartbeat"
    return f"The last worker heartbeat was {int(value)} s ago"


RULES = [
    Rule(
        "dead_letters",
        "Dead letters in the outbox",
        "ALERT_DEAD_LETTERS",
        _dead_letters,
        _count("dead letter", "dead letters"),
    ),
    Rule(
        "outbox_retries",
        "Telegram deliveries failing",
        "ALERT_RETRIES_PER_HOUR",
        _retries,
        _count(
            "failed delivery attempt in the last hour", "failed delivery attempts in the last hour"
        ),
    ),
    Rule(
        "overdue_approvals",
        "Approval requests undecided past their reminder",
        "ALERT_OVERDUE_APPROVALS",
        selectors.overdue_approvals,
        _count("request undecided past its reminder", "requests undecided past their reminder"),
    ),
    Rule(
        "failed_updates",
        "Failed inbound Telegram updates",
        "ALERT_FAILED_UPDATES",
        _failed_updates,
        _count("failed inbound update", "failed inbound updates"),
    ),
    Rule(
        "worker_heartbeat",
        "No worker heartbeat",
        "WORKER_HEARTBEAT_MAX_AGE",
        heartbeat.age,
        _heartbeat,
    ),
]


@dataclass(frozen=True)
class Outcome:
    """What one rule's check did (or, in a dry run, would do)."""

    rule: str
    action: str
    value: float | None
    threshold: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action,
            "value": self.value,
            "threshold": self.threshold,
            "text": self.text,
        }


def check(now: datetime | None = None, *, dry_run: bool = False) -> list[Outcome]:
    """Check every rule once; with ``dry_run`` write and send nothing, only say what would go."""
    now = now or timezone.now()
    return [_check(rule, now, dry_run=dry_run) for rule in RULES]


def _check(rule: Rule, now: datetime, *, dry_run: bool) -> Outcome:
    value = rule.measure(now)
    crossing = rule.crossed(value)
    if dry_run:
        state = AlertState.objects.filter(rule=rule.name).first() or AlertState(rule=rule.name)
        return _outcome(rule, _action(state, crossing, now), value)
    with transaction.atomic():
        AlertState.objects.get_or_create(rule=rule.name)
        state = AlertState.objects.select_for_update().get(rule=rule.name)
        outcome = _outcome(rule, _action(state, crossing, now), value)
        state.value = value
        state.checked_at = now
        if outcome.action in (FIRE, REPEAT):
            state.firing = True
            state.last_fired_at = now
        elif outcome.action == RESOLVE:
            state.firing = False
            state.resolved_at = now
        state.save()
        if outcome.action in SENDS:
            _send(state, outcome, now)
    return outcome


def _action(state: AlertState, crossing: bool, now: datetime) -> str:
    if not crossing:
        return RESOLVE if state.firing else OK
    cooldown = timedelta(minutes=settings.ALERT_COOLDOWN_MINUTES)
    if state.last_fired_at is not None and now - state.last_fired_at < cooldown:
        return QUIET
    return REPEAT if state.firing else FIRE


def _outcome(rule: Rule, action: str, value: float | None) -> Outcome:
    figure = rule.describe(value)
    if action == RESOLVE:
        text = f"✅ Resolved: {rule.title}\n{figure}."
    elif action in (FIRE, REPEAT):
        heading = "Still firing" if action == REPEAT else "Alert"
        text = (
            f"🚨 {heading}: {rule.title}\n{figure} (threshold {rule.threshold:g}).\n"
            f"Runbook: {rule.runbook}"
        )
    else:
        text = ""
    return Outcome(rule.name, action, value, rule.threshold, text)


def _send(state: AlertState, outcome: Outcome, now: datetime) -> None:
    """Queue the message (when a notify chat is set) and audit it, in the caller's transaction."""
    chat_id = settings.TELEGRAM_NOTIFY_CHAT_ID
    message = None
    if chat_id is not None:
        message = outbox.enqueue(
            method="sendMessage",
            chat_id=chat_id,
            payload={"text": outcome.text},
            dedupe_key=f"alert:{outcome.rule}:{outcome.action}:{now.isoformat()}",
        )
    record(
        "alert.resolved" if outcome.action == RESOLVE else "alert.fired",
        actor=system_actor("alerts"),
        obj=state,
        details={
            **outcome.as_dict(),
            "chat_id": chat_id,
            "outbound_message": message.pk if message else None,
        },
    )
