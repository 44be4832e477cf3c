"""What django-q2 runs for monitoring: the heartbeat (twice a minute) and the alert check."""

from . import alerts, heartbeat


def beat() -> None:
    """Write this worker's heartbeat."""
    heartbeat.beat()


def check_alerts() -> list[dict[str, object]]:
    """Evaluate every alert rule once; send what fires or resolves (``alerts.check``)."""
    return [outcome.as_dict() for outcome in alerts.check()]
