"""Durations as people read them: "54 min left", "expired 3 h ago"."""

from datetime import datetime

from django.utils import timezone


def span(seconds: float) -> str:
    """A rounded length of time: "40 s", "54 min", "3 h", "2 d"."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def lease_state(expires_at: datetime, released_at: datetime | None, now=None) -> str:
    """How a lease stands: "54 min left", "expired 3 h ago" or "released 2 min ago"."""
    now = now or timezone.now()
    if released_at is not None:
        return f"released {span((now - released_at).total_seconds())} ago"
    if expires_at > now:
        return f"{span((expires_at - now).total_seconds())} left"
    return f"expired {span((now - expires_at).total_seconds())} ago"
