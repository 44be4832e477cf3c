"""What django-q2 runs for monitoring: the heartbeat (twice a minute) and the alert check."""

from . import alerts, heartbeat


def beat() -> None:
    """Write this worker's heartbeat."""
    heartbeat.beat()


def check_alerts() -> list[dict[str, object]]:
    """Evaluate every alert rule once; send what fires or resolves (``alerts.check``).

    A worker running this is alive, so it beats first: the check and the first heartbeat
    schedules fall due in the same minute after a deploy, and the check must not find the
    heartbeat missing only because it ran first.
    """
    heartbeat.beat()
    return [outcome.as_dict() for outcome in alerts.check()]
