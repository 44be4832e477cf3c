"""The worker heartbeat: proof that the scheduler, the broker and a worker all still run.

Two django-q2 schedules, half a minute apart (``backoffice/schedules.py``), queue ``beat`` every
minute each, so a worker writes a beat every 30 s. ``last_beat`` is what /readyz, the worker alert
and the admin dashboard read.
"""

import socket
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from .models import WorkerHeartbeat


def beat(now: datetime | None = None) -> datetime:
    """Record that a worker on this host is alive; returns the time written."""
    now = now or timezone.now()
    WorkerHeartbeat.objects.update_or_create(worker=socket.gethostname(), defaults={"beat_at": now})
    return now


def last_beat() -> datetime | None:
    """When any worker last beat; ``None`` when none ever did."""
    return WorkerHeartbeat.objects.aggregate(last=Max("beat_at"))["last"]


def age(now: datetime | None = None) -> float | None:
    """Seconds since the last beat; ``None`` when there never was one."""
    last = last_beat()
    if last is None:
        return None
    return max(((now or timezone.now()) - last).total_seconds(), 0.0)
