"""The periodic jobs django-q2 runs, in one list.

``manage.py install_schedules`` writes them as django-q2 ``Schedule`` rows; run it after ``migrate``
on every deploy. Intervals are in minutes, django-q2's smallest unit; ``offset_seconds`` delays a
schedule's first run, so two schedules a minute apart each can run something every 30 s. An entry
with a ``cluster`` runs on that cluster's queue only (the runner cluster's sweep); the others on
the default one.
"""

from typing import NotRequired, TypedDict

from django.conf import settings


class ScheduleEntry(TypedDict):
    name: str
    func: str
    minutes: int
    offset_seconds: NotRequired[int]
    cluster: NotRequired[str]


SCHEDULES: list[ScheduleEntry] = [
    {
        "name": "Expire overdue approval requests",
        "func": "claims.tasks.expire_approvals",
        "minutes": 1,
    },
    {
        "name": "Remind and escalate undecided approval requests",
        "func": "claims.tasks.follow_up_approvals",
        "minutes": 1,
    },
    {
        "name": "Deliver due outbox messages",
        "func": "telegram_bridge.tasks.sweep",
        "minutes": 1,
    },
    {
        "name": "Deliver due decision callbacks",
        "func": "callbacks.tasks.sweep",
        "minutes": 1,
    },
    {
        "name": "Process inbound updates whose task was lost",
        "func": "telegram_bridge.tasks.process_stale_updates",
        "minutes": 1,
    },
    {
        "name": "Requeue recently dead outbox messages",
        "func": "telegram_bridge.tasks.auto_requeue",
        "minutes": 15,
    },
    {
        "name": "Resume jobs whose worker died, and start waiting jobs",
        "func": "automation.tasks.sweep",
        "minutes": 1,
        "cluster": settings.AUTOMATION_QUEUE,
    },
    {
        "name": "Publish a checkpoint of the audit chain",
        "func": "audit.tasks.checkpoint",
        "minutes": 60,
    },
    {
        "name": "Check the alert rules",
        "func": "monitoring.tasks.check_alerts",
        "minutes": 1,
    },
    {
        "name": "Worker heartbeat",
        "func": "monitoring.tasks.beat",
        "minutes": 1,
    },
    {
        "name": "Worker heartbeat, half a minute later",
        "func": "monitoring.tasks.beat",
        "minutes": 1,
        "offset_seconds": 30,
    },
]
